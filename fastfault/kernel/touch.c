/*
 * fastfault touch helper: map a file at a fixed address and touch pages in two measured phases.
 *
 * Built at run time by fastfault.kernel.record (gcc), so that the process that takes the measurements
 * allocates nothing and faults on nothing but the mapping while it touches: everything it needs is read,
 * allocated and pre-touched (and mlocked, when allowed) before the first getrusage() call, and between the
 * two getrusage() calls of a phase it only does the loads/stores of the phase.
 *
 * Usage: touch INPUT OUTPUT
 *
 * INPUT (little-endian):
 *   u64 magic "FFTOUCH1"
 *   u64 vma_start, vma_pages, offset_pages, flags (bit 0 MAP_PRIVATE, bit 1 PROT_WRITE),
 *       n1, n2, store_value, tlb_bytes, path_len
 *   char path[path_len], zero-padded to a multiple of 8
 *   i64 trace1[n1], i64 trace2[n2], u8 write1[n1], u8 write2[n2]
 *
 * OUTPUT:
 *   u64 magic "FFTOUT01", u64 mlocked
 *   per phase: i64 minflt, majflt, smaps_len; u64 pagemap[vma_pages]; char smaps[smaps_len] padded to 8
 *
 * Exit status: 0 ok, 2 bad input/usage, 3 a system call failed (message on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PAGE 4096UL
#define SMAPS_MAX (8UL << 20)

static char smaps_buf[2][SMAPS_MAX];
static int64_t smaps_len[2];
static int64_t flt[2][2];

static void die(const char *what)
{
    fprintf(stderr, "touch: %s: %s\n", what, strerror(errno));
    exit(3);
}

static void bad(const char *what)
{
    fprintf(stderr, "touch: bad input: %s\n", what);
    exit(2);
}

static void read_full(int fd, void *buf, size_t len, const char *what)
{
    char *p = buf;
    while (len) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die(what);
        if (r == 0)
            bad(what);
        p += r;
        len -= (size_t)r;
    }
}

static void write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t r = write(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("write output");
        p += r;
        len -= (size_t)r;
    }
}

/* Grow and touch the stack well beyond what the rest of the program needs. */
static __attribute__((noinline)) void pretouch_stack(void)
{
    volatile char pad[512 * 1024];
    for (size_t i = 0; i < sizeof(pad); i += PAGE / 2)
        pad[i] = 1;
    pad[sizeof(pad) - 1] = 1;
}

/* The only code that runs between the two getrusage() calls of a phase. */
static __attribute__((noinline)) void touch(char *base, const int64_t *trace, const uint8_t *write, int64_t n,
                                            char value)
{
    for (int64_t i = 0; i < n; i++) {
        volatile char *p = base + (uint64_t)trace[i] * PAGE;
        if (write[i])
            *p = value;
        else
            (void)*p;
    }
}

static __attribute__((noinline)) void flush_tlb(volatile char *buf, uint64_t bytes)
{
    for (int round = 0; round < 2; round++)
        for (uint64_t off = 0; off < bytes; off += PAGE)
            (void)buf[off];
}

static int64_t read_proc(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die(path);
    size_t len = 0;
    for (;;) {
        if (len >= cap - 1)
            bad("smaps larger than the buffer");
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die(path);
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = 0;
    return (int64_t)len;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: touch INPUT OUTPUT\n");
        return 2;
    }
    int in = open(argv[1], O_RDONLY);
    if (in < 0)
        die(argv[1]);
    uint64_t hdr[10];
    read_full(in, hdr, sizeof(hdr), "header");
    if (memcmp(&hdr[0], "FFTOUCH1", 8) != 0)
        bad("magic");
    uint64_t vma_start = hdr[1], vma_pages = hdr[2], offset_pages = hdr[3], flags = hdr[4];
    int64_t n[2] = {(int64_t)hdr[5], (int64_t)hdr[6]};
    char value = (char)hdr[7];
    uint64_t tlb_bytes = hdr[8], path_len = hdr[9];
    if (vma_start % PAGE || vma_pages == 0 || n[0] < 0 || n[1] < 0 || path_len == 0 || path_len > 4096)
        bad("header values");
    size_t padded = (path_len + 7) & ~7UL;
    char *path = calloc(1, padded + 1);
    int64_t *trace[2];
    uint8_t *wflag[2];
    if (!path)
        die("calloc");
    read_full(in, path, padded, "path");
    for (int ph = 0; ph < 2; ph++) {
        trace[ph] = malloc(sizeof(int64_t) * (size_t)(n[ph] + 1));
        if (!trace[ph])
            die("malloc");
    }
    for (int ph = 0; ph < 2; ph++)
        read_full(in, trace[ph], sizeof(int64_t) * (size_t)n[ph], "trace");
    for (int ph = 0; ph < 2; ph++) {
        wflag[ph] = malloc((size_t)n[ph] + 1);
        if (!wflag[ph])
            die("malloc");
        read_full(in, wflag[ph], (size_t)n[ph], "write flags");
    }
    close(in);
    for (int ph = 0; ph < 2; ph++)
        for (int64_t i = 0; i < n[ph]; i++) {
            if (trace[ph][i] < 0 || (uint64_t)trace[ph][i] >= vma_pages)
                bad("trace entry outside the mapping");
            if (wflag[ph][i] && !(flags & 2))
                bad("store in a read-only mapping");
        }

    uint64_t *pagemap[2];
    for (int ph = 0; ph < 2; ph++) {
        pagemap[ph] = malloc(8 * vma_pages);
        if (!pagemap[ph])
            die("malloc");
        memset(pagemap[ph], 0, 8 * vma_pages);
        memset(smaps_buf[ph], 0, SMAPS_MAX);
    }
    int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0)
        die(argv[2]);
    int pm = open("/proc/self/pagemap", O_RDONLY);
    if (pm < 0)
        die("/proc/self/pagemap");
    int clear = open("/proc/self/clear_refs", O_WRONLY);
    if (clear < 0)
        die("/proc/self/clear_refs");
    int fd = open(path, (flags & 3) == 2 ? O_RDWR : O_RDONLY);
    if (fd < 0)
        die(path);

    char *tlb = mmap(NULL, tlb_bytes ? tlb_bytes : PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                     0);
    if (tlb == MAP_FAILED)
        die("mmap tlb buffer");
    madvise(tlb, tlb_bytes ? tlb_bytes : PAGE, MADV_NOHUGEPAGE);
    for (uint64_t off = 0; off < tlb_bytes; off += PAGE)
        tlb[off] = 1;

    pretouch_stack();
    struct rusage ru[2];
    memset(ru, 0, sizeof(ru));
    getrusage(RUSAGE_SELF, &ru[0]);
    touch(NULL, trace[0], wflag[0], 0, value);
    flush_tlb(tlb, 0);
    /* Lock everything mapped so far (code, stack, heap, buffers); the file is mapped afterwards, unlocked. */
    uint64_t mlocked = mlockall(MCL_CURRENT) == 0;

    int prot = PROT_READ | ((flags & 2) ? PROT_WRITE : 0);
    int mflags = ((flags & 1) ? MAP_PRIVATE : MAP_SHARED) | MAP_FIXED_NOREPLACE;
    char *base = mmap((void *)vma_start, vma_pages * PAGE, prot, mflags, fd, (off_t)(offset_pages * PAGE));
    if (base == MAP_FAILED)
        die("mmap file at the fixed address");
    if ((uint64_t)base != vma_start) {
        errno = EEXIST;
        die("mmap file at the fixed address (kernel ignored MAP_FIXED_NOREPLACE)");
    }

    for (int ph = 0; ph < 2; ph++) {
        if (ph == 1) {
            if (write(clear, "1", 1) != 1)
                die("write /proc/self/clear_refs");
            flush_tlb(tlb, tlb_bytes);
        }
        getrusage(RUSAGE_SELF, &ru[0]);
        touch(base, trace[ph], wflag[ph], n[ph], value);
        getrusage(RUSAGE_SELF, &ru[1]);
        flt[ph][0] = ru[1].ru_minflt - ru[0].ru_minflt;
        flt[ph][1] = ru[1].ru_majflt - ru[0].ru_majflt;
        ssize_t want = (ssize_t)(8 * vma_pages);
        if (pread(pm, pagemap[ph], (size_t)want, (off_t)(vma_start / PAGE * 8)) != want)
            die("read /proc/self/pagemap");
        smaps_len[ph] = read_proc("/proc/self/smaps", smaps_buf[ph], SMAPS_MAX);
    }

    uint64_t ohdr[2];
    memcpy(&ohdr[0], "FFTOUT01", 8);
    ohdr[1] = mlocked;
    write_full(out, ohdr, sizeof(ohdr));
    for (int ph = 0; ph < 2; ph++) {
        int64_t h[3] = {flt[ph][0], flt[ph][1], smaps_len[ph]};
        write_full(out, h, sizeof(h));
        write_full(out, pagemap[ph], 8 * vma_pages);
        size_t sl = ((size_t)smaps_len[ph] + 7) & ~7UL;
        write_full(out, smaps_buf[ph], sl);
    }
    if (close(out) != 0)
        die("close output");
    munmap(base, vma_pages * PAGE);
    return 0;
}
