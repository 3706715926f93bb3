/* smoke.c - a program outside the tree that uses an installed champ; built
 * by .ci/run against a staged install, through pkg-config and through CMake
 * (CMakeLists.txt here), static and shared. */
#include <champ.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    champ_map *a, *b;
    void *v = NULL;
    if (champ_new_bytes(&a) != CHAMP_OK) return 1;
    if (champ_set_str(a, "hello", "world", NULL) != CHAMP_OK) return 2;
    if (champ_pset_bytes(a, "x", 1, "y", &b) != CHAMP_OK) return 3;
    if (!champ_get_str(b, "hello", &v) || strcmp(v, "world")) return 4;
    if (champ_size(a) != 1 || champ_size(b) != 2) return 5;
    if (champ_validate(b) != CHAMP_OK) return 6;
    champ_free(a);
    champ_free(b);
    printf("champ %d.%d.%d smoke test ok\n", CHAMP_VERSION_MAJOR,
           CHAMP_VERSION_MINOR, CHAMP_VERSION_PATCH);
    return 0;
}
