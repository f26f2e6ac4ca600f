#ifndef CLINUX_SHIM_H
#define CLINUX_SHIM_H
#include <fcntl.h>
#include <sys/types.h>
#include <sys/xattr.h>

/* O_NOATIME needs _GNU_SOURCE, which Swift's Glibc module is not built with. */
#ifdef O_NOATIME
static const int CLinux_O_NOATIME = O_NOATIME;
#else
static const int CLinux_O_NOATIME = 01000000;
#endif
#endif
