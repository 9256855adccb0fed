#define _GNU_SOURCE
#include "process_spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/// Moves `fd` to a number above 2 in the child, so that the dup2 onto 0, 1 and 2 cannot clobber
/// another of the three (a gateway started with a closed stdin gets pipes numbered 0 to 2).
static int above_standard(int fd) {
    return fd > 2 ? fd : fcntl(fd, F_DUPFD, 3);
}

int prefab_spawn(const char *path, char *const argv[], char *const envp[], const char *directory, int stdin_fd,
                 int stdout_fd, int stderr_fd, pid_t *pid) {
    // vfork: the child shares our memory until it execs, so it reports a failure through this.
    volatile int child_error = 0;
    pid_t parent = getpid();
    sigset_t all, previous;
    sigfillset(&all);
    // No handler of ours may run in the child before the exec.
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    pid_t child = vfork();
    if (child == 0) {
        // Defaults for every signal (the gateway ignores SIGPIPE; a child must not inherit that).
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = SIG_DFL;
        for (int signal_number = 1; signal_number < NSIG; signal_number++) {
            sigaction(signal_number, &action, NULL);
        }
        int in = above_standard(stdin_fd), out = above_standard(stdout_fd), err = above_standard(stderr_fd);
        if (in < 0 || out < 0 || err < 0 || setpgid(0, 0) != 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
            child_error = errno;
            _exit(127);
        }
        // The parent may have ended before PDEATHSIG was set.
        if (getppid() != parent) {
            _exit(127);
        }
        if (chdir(directory) != 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
            child_error = errno;
            _exit(127);
        }
        // Close-on-exec or not, no other descriptor of the gateway reaches the child.
        if (syscall(SYS_close_range, 3U, ~0U, 0) != 0) {
            for (int fd = 3; fd < 65536; fd++) {
                close(fd);
            }
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, envp);
        child_error = errno;
        _exit(127);
    }
    int spawn_error = child < 0 ? errno : child_error;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (child < 0) {
        return spawn_error;
    }
    if (spawn_error != 0) {
        int status;
        while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
        }
        return spawn_error;
    }
    *pid = child;
    return 0;
}

int prefab_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int prefab_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int prefab_set_thread_name(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

int prefab_thread_name(char *name, size_t size) {
    return pthread_getname_np(pthread_self(), name, size);
}

ssize_t prefab_random_bytes(void *buffer, size_t size) {
    return syscall(SYS_getrandom, buffer, size, 0);
}

int prefab_become_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

/// The main thread's children file, opened once: every call's end lists it, and opening it (a
/// /proc path walk, then fopen's stat and buffer) took about 2% of the machine's CPU in a run of
/// short Python calls (perf). A /proc list read from offset 0 again is made anew, so `pread` at 0
/// sees the present children.
static _Atomic int adopted_fd = -1;

static int adopted_file(void) {
    int fd = atomic_load(&adopted_fd);
    if (fd >= 0) {
        return fd;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    fd = open(path, O_RDONLY | O_CLOEXEC);
    int expected = -1;
    if (fd >= 0 && !atomic_compare_exchange_strong(&adopted_fd, &expected, fd)) {
        close(fd);  // another thread opened it first
        fd = expected;
    }
    return fd;
}

int prefab_list_adopted(pid_t *children, int capacity) {
    int fd = adopted_file();
    if (fd < 0) {
        return -1;
    }
    // A pid is at most 7 digits and a space; room for one more digit keeps a full list apart
    // from a cut one.
    size_t size = (size_t)capacity * 9 + 2;
    char small[4096];
    char *text = size <= sizeof small ? small : malloc(size);
    size_t length = 0;
    ssize_t count = 1;
    while (text != NULL && length < size - 1 && count > 0) {
        count = pread(fd, text + length, size - 1 - length, (off_t)length);
        if (count > 0) {
            length += (size_t)count;
        }
    }
    if (text == NULL || count < 0) {
        if (text != small) {
            free(text);
        }
        return -1;
    }
    text[length] = 0;
    int found = 0;
    char *cursor = text;
    while (found < capacity) {
        char *end;
        long value = strtol(cursor, &end, 10);
        if (end == cursor) {
            break;
        }
        children[found++] = (pid_t)value;
        cursor = end;
    }
    if (text != small) {
        free(text);
    }
    return found;
}

/// Recorded process groups, one bit per id (the kernel's pid limit is at most 2^22).
#define GUARDIAN_GROUPS (1 << 22)
static unsigned long guardian_groups[GUARDIAN_GROUPS / (8 * sizeof(unsigned long))];

/// The guardian's life: only async-signal-safe calls, since it is forked from a threaded process.
static void guardian_main(int fd) {
    setsid();
    struct sigaction ignore;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2};
    for (unsigned index = 0; index < sizeof ignored / sizeof ignored[0]; index++) {
        sigaction(ignored[index], &ignore, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    // Nothing of the gateway's (its listening socket above all) is held here.
    if (fd > 0) {
        syscall(SYS_close_range, 0U, (unsigned)fd - 1, 0);
    }
    syscall(SYS_close_range, (unsigned)fd + 1, ~0U, 0);
    const size_t bits = 8 * sizeof(unsigned long);
    int ids[1024];
    size_t held = 0;  // bytes of a partly read id
    for (;;) {
        ssize_t count = read(fd, (char *)ids + held, sizeof ids - held);
        if (count < 0 && errno == EINTR) {
            continue;
        }
        if (count <= 0) {
            break;
        }
        held += (size_t)count;
        size_t whole = held / sizeof(int);
        for (size_t index = 0; index < whole; index++) {
            int id = ids[index];
            unsigned group = (unsigned)(id < 0 ? -id : id);
            if (group == 0 || group >= GUARDIAN_GROUPS) {
                continue;
            }
            if (id > 0) {
                guardian_groups[group / bits] |= 1UL << (group % bits);
            } else {
                guardian_groups[group / bits] &= ~(1UL << (group % bits));
            }
        }
        size_t rest = held - whole * sizeof(int);
        memmove(ids, (char *)ids + whole * sizeof(int), rest);
        held = rest;
    }
    for (size_t word = 0; word < GUARDIAN_GROUPS / bits; word++) {
        unsigned long set = guardian_groups[word];
        for (size_t bit = 0; set != 0 && bit < bits; bit++) {
            if (set & (1UL << bit)) {
                kill(-(pid_t)(word * bits + bit), SIGKILL);
            }
        }
    }
    _exit(0);
}

int prefab_start_guardian(void) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        return -1;
    }
    // _Fork: no fork handlers of the runtime's run in a child that only makes system calls.
    pid_t first = _Fork();
    if (first < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (first == 0) {
        // Twice, so that the guardian is no child of the gateway (init adopts it).
        if (_Fork() != 0) {
            _exit(0);
        }
        close(fds[1]);
        guardian_main(fds[0]);
    }
    int status;
    while (waitpid(first, &status, 0) < 0 && errno == EINTR) {
    }
    close(fds[0]);
    return fds[1];
}

int prefab_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int prefab_epoll_add(int epoll, int fd) {
    struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event);
}

void prefab_epoll_remove(int epoll, int fd) {
    epoll_ctl(epoll, EPOLL_CTL_DEL, fd, NULL);
}

int prefab_epoll_wait(int epoll, int *fds, int capacity) {
    struct epoll_event events[64];
    int count = epoll_wait(epoll, events, capacity < 64 ? capacity : 64, -1);
    for (int index = 0; index < count; index++) {
        fds[index] = events[index].data.fd;
    }
    return count;
}

int prefab_directory_has_entries(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    // Aligned for the kernel's `struct linux_dirent64` records.
    _Alignas(8) char buffer[1024];
    int found = 0;
    for (;;) {
        long count = syscall(SYS_getdents64, fd, buffer, sizeof buffer);
        if (count < 0 && errno == EINTR) {
            continue;
        }
        if (count <= 0) {
            found = count < 0 ? -1 : 0;
            break;
        }
        for (long offset = 0; offset < count;) {
            struct dirent64 *entry = (struct dirent64 *)(buffer + offset);
            const char *name = entry->d_name;
            if (!(name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))) {
                found = 1;
                break;
            }
            offset += entry->d_reclen;
        }
        if (found) {
            break;
        }
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return found;
}
