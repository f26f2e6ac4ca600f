#ifndef CLINUX_SHIM_H
#define CLINUX_SHIM_H
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
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

/* Signals delivered as bytes on a pipe (the self-pipe trick): the handler only writes the signal
   number, which is async-signal-safe, and a thread reading the pipe does the work. Installed
   without SA_RESTART, so a blocking read in the main thread (a prompt) returns EINTR. For one
   module only (the command-line tool): the pipe's descriptor lives in this header. */
static int CLinux_signal_pipe = -1;

static void CLinux_signal_to_pipe(int number) {
    int saved = errno;
    unsigned char byte = (unsigned char)number;
    (void)!write(CLinux_signal_pipe, &byte, 1);
    errno = saved;
}

static inline int CLinux_send_signal_to_pipe(int number, int fd) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = CLinux_signal_to_pipe;
    sigemptyset(&action.sa_mask);
    CLinux_signal_pipe = fd;
    return sigaction(number, &action, NULL);
}
#endif
