/*
 * real_faults.c -- what the running kernel spends on file-backed read faults.
 *
 *   real_faults create FILE NPAGES
 *       Write FILE with NPAGES 4 KiB pwrite() calls and fsync() it. Each 4 KiB buffered write allocates an
 *       order-0 folio, so the file ends up in the page cache as NPAGES clean order-0 folios (the layout the
 *       simulator's fault-heavy trace uses; benchmarks/run.py checks it with /proc/kpageflags).
 *
 *   real_faults touch FILE NPAGES MODE REPS
 *       REPS times: mmap the first NPAGES pages of FILE (PROT_READ, MAP_SHARED), apply MODE, read one byte
 *       of every page in order, munmap. The touch loop alone is timed with clock_gettime(CLOCK_MONOTONIC)
 *       and its faults counted with getrusage(RUSAGE_SELF) (ru_minflt, ru_majflt). MODE is
 *         normal  no advice: fault-around maps fault_around_bytes (default 64 KiB) per fault
 *         random  MADV_RANDOM: no readahead; fault-around is NOT disabled by it (mm/memory.c
 *                 should_fault_around() only looks at userfaultfd), so the same faults as normal
 *         split   every page its own VMA (MADV_RANDOM on every other page splits the mapping): the
 *                 fault-around window is clamped to the VMA, so every touch is a fault that maps one
 *                 page -- the real-kernel counterpart of fault_around_bytes = 4 KiB without changing
 *                 the system-wide debugfs knob. Limited by vm.max_map_count (65530 by default).
 *       Prints one JSON object per repetition on stdout.
 *
 * Build: gcc -O2 -o real_faults real_faults.c
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
#include <time.h>
#include <unistd.h>

#define PAGE 4096L

static void die(const char *what)
{
	fprintf(stderr, "real_faults: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int create_file(const char *path, long npages)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0)
		die("open");
	char *buf = malloc(PAGE);
	for (long i = 0; i < npages; i++) {
		memset(buf, (int)(i & 0xff) | 1, PAGE);
		if (pwrite(fd, buf, PAGE, i * PAGE) != PAGE)
			die("pwrite");
	}
	if (fsync(fd) != 0)
		die("fsync");
	free(buf);
	close(fd);
	return 0;
}

static int touch_file(const char *path, long npages, const char *mode, int reps)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open");
	size_t len = (size_t)npages * PAGE;
	for (int r = 0; r < reps; r++) {
		char *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			die("mmap");
		if (strcmp(mode, "random") == 0) {
			if (madvise(p, len, MADV_RANDOM) != 0)
				die("madvise");
		} else if (strcmp(mode, "split") == 0) {
			for (long i = 1; i < npages; i += 2)
				if (madvise(p + i * PAGE, PAGE, MADV_RANDOM) != 0)
					die("madvise (split: raise vm.max_map_count or use fewer pages)");
		} else if (strcmp(mode, "normal") != 0) {
			fprintf(stderr, "real_faults: unknown mode %s\n", mode);
			return 2;
		}
		struct rusage r0, r1;
		volatile unsigned long sink = 0;
		getrusage(RUSAGE_SELF, &r0);
		int64_t t0 = now_ns();
		unsigned long acc = 0;
		for (long i = 0; i < npages; i++)
			acc += (unsigned char)p[i * PAGE];
		int64_t t1 = now_ns();
		getrusage(RUSAGE_SELF, &r1);
		sink = acc;
		(void)sink;
		long minflt = r1.ru_minflt - r0.ru_minflt;
		long majflt = r1.ru_majflt - r0.ru_majflt;
		int64_t ns = t1 - t0;
		long faults = minflt + majflt;
		printf("{\"mode\": \"%s\", \"rep\": %d, \"pages\": %ld, \"minflt\": %ld, \"majflt\": %ld, \"ns\": %lld, "
		       "\"ns_per_fault\": %.1f, \"ns_per_page\": %.2f}\n",
		       mode, r, npages, minflt, majflt, (long long)ns, faults ? (double)ns / faults : 0.0,
		       (double)ns / npages);
		fflush(stdout);
		if (munmap(p, len) != 0)
			die("munmap");
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "create") == 0)
		return create_file(argv[2], atol(argv[3]));
	if (argc == 6 && strcmp(argv[1], "touch") == 0)
		return touch_file(argv[2], atol(argv[3]), argv[4], atoi(argv[5]));
	fprintf(stderr, "usage: real_faults create FILE NPAGES | real_faults touch FILE NPAGES normal|random|split REPS\n");
	return 2;
}
