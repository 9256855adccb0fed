#ifndef PROCESS_SPAWN_H
#define PROCESS_SPAWN_H

#include <sys/types.h>

/// Starts `path` with `argv` and `envp` (NULL-terminated) in `directory`, the child's stdin,
/// stdout and stderr being `stdin_fd`, `stdout_fd` and `stderr_fd`, every other descriptor closed,
/// every signal at its default and unblocked, in a process group of its own, and killed
/// (SIGKILL) when the thread that called this ends. Returns 0 and sets `*pid`, or an errno value
/// (the exec's own when the program cannot run).
int prefab_spawn(const char *path, char *const argv[], char *const envp[], const char *directory, int stdin_fd,
                 int stdout_fd, int stderr_fd, pid_t *pid);

/// `pipe2(fds, O_CLOEXEC)`: 0, or -1 with errno.
int prefab_pipe(int fds[2]);

/// A pidfd for `pid` (readable once it has exited), or -1 with errno.
int prefab_pidfd_open(pid_t pid);

/// Makes the calling process a child subreaper: orphaned descendants become its children.
/// 0, or -1 with errno.
int prefab_become_subreaper(void);

/// The children of this process's main thread, as listed by /proc: the orphans it adopted as a
/// subreaper (at most `capacity`); the count, or -1.
int prefab_list_adopted(pid_t *children, int capacity);

/// Whether the directory at `path` holds anything but `.` and `..`: 1, 0, or -1 with errno (it is
/// gone, say). Reads entries into a buffer on the stack: `opendir` allocates 32 KiB, whose malloc
/// and free merged the allocator's small free chunks on every call's end.
int prefab_directory_has_entries(const char *path);

/// Names the calling thread (Linux keeps 15 bytes); 0, or an error number.
int prefab_set_thread_name(const char *name);

/// The calling thread's name, into `name` of `size` bytes; 0, or an error number.
int prefab_thread_name(char *name, size_t size);

/// Fills `buffer` with `size` bytes from the kernel's generator (getrandom), in one call for up
/// to 256 bytes; the count filled, or -1 with errno.
ssize_t prefab_random_bytes(void *buffer, size_t size);

/// An epoll instance (close-on-exec), or -1.
int prefab_epoll_create(void);

/// Watches `fd` for reading; 0, or -1 with errno.
int prefab_epoll_add(int epoll, int fd);

/// Stops watching `fd`.
void prefab_epoll_remove(int epoll, int fd);

/// Waits for readable descriptors and writes them to `fds` (at most `capacity`); their count, or
/// -1 with errno.
int prefab_epoll_wait(int epoll, int *fds, int capacity);

/// Starts the guardian: a small process, detached from the gateway, that reads process group ids
/// from a pipe (a positive id: a call's group started; negative: it ended) and, once the pipe's
/// write end closes because the gateway exited in any way (SIGKILL included), kills every group
/// still recorded. Returns the pipe's write end (close-on-exec), or -1. Call it before
/// `prefab_become_subreaper`, so that the guardian is not adopted back.
int prefab_start_guardian(void);

#endif
