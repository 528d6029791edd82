/* Reuse one address for two files: the recorder must attribute each access to the right one.
 *
 * Usage: remap FILE_A FILE_B  (each at least 5 pages)
 * 1. maps FILE_A pages 0-3 at an address X chosen by the kernel and loads one byte of each page;
 * 2. unmaps them, maps FILE_B pages 1-4 at the same X (MAP_FIXED) and loads two bytes of each page.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int fa = open(argv[1], O_RDONLY), fb = open(argv[2], O_RDONLY);
    if (fa < 0 || fb < 0)
        return 3;
    volatile char *a = mmap(NULL, 4 * 4096, PROT_READ, MAP_PRIVATE, fa, 0);
    if (a == MAP_FAILED)
        return 4;
    long s = 0;
    for (int i = 0; i < 4; i++)
        s += a[i * 4096];
    munmap((void *)a, 4 * 4096);
    volatile char *b = mmap((void *)a, 4 * 4096, PROT_READ, MAP_PRIVATE | MAP_FIXED, fb, 4096);
    if (b != a)
        return 5;
    for (int i = 0; i < 4; i++)
        s += b[i * 4096] + b[i * 4096 + 1];
    /* use the sum: valgrind's IR optimiser drops loads whose values are dead */
    if (s == -1)
        puts("unlikely");
    return 0;
}
