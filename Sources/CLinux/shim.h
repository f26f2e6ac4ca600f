#ifndef CLINUX_SHIM_H
#define CLINUX_SHIM_H
#include <fcntl.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>

/* O_NOATIME needs _GNU_SOURCE, which Swift's Glibc module is not built with. */
#ifdef O_NOATIME
static const int CLinux_O_NOATIME = O_NOATIME;
#else
static const int CLinux_O_NOATIME = 01000000;
#endif

/* Declared here because Swift's Glibc module is built without _GNU_SOURCE. */
extern int syncfs(int fd);
static inline int CLinux_syncfs(int fd) { return syncfs(fd); }
extern int sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags);
/* Starts writing a file's dirty pages to disk without waiting (SYNC_FILE_RANGE_WRITE). */
static inline int CLinux_start_writeback(int fd) { return sync_file_range(fd, 0, 0, 2); }
#endif
