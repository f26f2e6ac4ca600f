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
#include <sys/syscall.h>
#include <stdint.h>
#include <linux/stat.h>
#include <malloc.h>

/* O_NOATIME needs _GNU_SOURCE, which Swift's Glibc module is not built with. */
#ifdef O_NOATIME
static const int CLinux_O_NOATIME = O_NOATIME;
#else
static const int CLinux_O_NOATIME = 01000000;
#endif

/* O_PATH and AT_EMPTY_PATH need _GNU_SOURCE too. */
#ifdef O_PATH
static const int CLinux_O_PATH = O_PATH;
#else
static const int CLinux_O_PATH = 010000000;
#endif
#ifdef AT_EMPTY_PATH
static const int CLinux_AT_EMPTY_PATH = AT_EMPTY_PATH;
#else
static const int CLinux_AT_EMPTY_PATH = 0x1000;
#endif

#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x00001000U
#endif
/* The id of the mount that holds the object `fd` refers to (statx with STATX_MNT_ID, Linux 5.8).
   Returns 0, or -1 with errno set; ENOSYS when the kernel does not report mount ids. */
static inline int CLinux_mount_id(int fd, uint64_t *id) {
    struct statx stx;
    memset(&stx, 0, sizeof stx);
    if (syscall(SYS_statx, fd, "", CLinux_AT_EMPTY_PATH, STATX_MNT_ID, &stx) != 0) return -1;
    if (!(stx.stx_mask & STATX_MNT_ID)) { errno = ENOSYS; return -1; }
    *id = stx.stx_mnt_id;
    return 0;
}

/* Declared here because Swift's Glibc module is built without _GNU_SOURCE. */
extern int syncfs(int fd);
static inline int CLinux_syncfs(int fd) { return syncfs(fd); }
/* Swaps two names in a directory atomically (renameat2 with RENAME_EXCHANGE); -1 with errno
   ENOENT when either is missing, EINVAL where the filesystem cannot. */
extern int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
static inline int CLinux_exchange(int dirfd, const char *a, const char *b) { return renameat2(dirfd, a, dirfd, b, 1u << 1); }

/* Makes the filesystem holding `fd` write its journal out to where the data lives, by freezing
   it (FIFREEZE) and thawing it at once (FITHAW): a boot loader reads a journaled filesystem
   without replaying its journal, and must see the entries as written. Returns 0, or -1 with
   errno set (EOPNOTSUPP for filesystems that cannot freeze, EPERM without CAP_SYS_ADMIN). */
#include <sys/ioctl.h>
#include <linux/fs.h>
static inline int CLinux_checkpoint_filesystem(int fd) {
    if (ioctl(fd, FIFREEZE, 0) != 0) return -1;
    return ioctl(fd, FITHAW, 0);
}

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
/* The signal this process gets when the thread that started it ends (prctl is variadic, which
   Swift cannot call). */
#include <sys/prctl.h>
static inline int CLinux_set_parent_death_signal(int number) { return prctl(PR_SET_PDEATHSIG, number, 0, 0, 0); }
/* The process's name in ps and top (up to 15 bytes). */
static inline int CLinux_set_process_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

#endif
