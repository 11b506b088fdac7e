// sync_file_range(2) is declared only under _GNU_SOURCE, which Swift's Glibc module leaves undefined.
#define _GNU_SOURCE
#include <fcntl.h>

#include "CSigmaCrypto.h"

int sigma_write_back(int fd, long long offset, long long length, int wait) {
    unsigned int flags = SYNC_FILE_RANGE_WRITE;
    if (wait) flags |= SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER;
    return sync_file_range(fd, offset, length, flags);
}
