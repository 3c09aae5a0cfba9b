/* Makes one system call per row and prints "ROW OUTCOME" ("ok" or the errno's name), each in a
 * child of its own so a kill or a hang ends only that row. Built static by the security tests
 * (gcc -static -O1 probe.c -o probe) and run from a read-only bind mount, the same binary in
 * `docker run` and `ferry run`.
 *
 * Arguments are chosen so that a call the filter lets through fails in the kernel with an errno
 * of its own (EFAULT, EBADF, EINVAL, ENOENT) or succeeds harmlessly: EPERM then means the filter
 * or a missing capability, ENOSYS a call the filter says does not exist. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

static const char *name_of(int e) {
    switch (e) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case EBADF: return "EBADF";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case ESRCH: return "ESRCH";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOKEY: return "ENOKEY";
    case EBUSY: return "EBUSY";
    case ENOTDIR: return "ENOTDIR";
    default: {
        static char buf[32];
        snprintf(buf, sizeof buf, "errno%d", e);
        return buf;
    }
    }
}

/* The outcome of a raw call: 0 when it returned >= 0, else its errno. */
static int raw(long r) { return r < 0 ? errno : 0; }

/* A 32-bit x86 call through int 0x80 (the kernel reports AUDIT_ARCH_I386 to the filter). */
static int i386_call(long nr, long a, long b) {
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory");
    return r < 0 ? (int)-r : 0;
}

static int row_ptrace_child(void) {
    pid_t c = fork();
    if (c == 0) {
        pause();
        _exit(0);
    }
    int e = raw(ptrace(PTRACE_ATTACH, c, 0, 0));
    if (e == 0) {
        waitpid(c, NULL, 0);
        ptrace(PTRACE_DETACH, c, 0, 0);
    }
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
    return e;
}

static int row_raw_socket_without_net_raw(void) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0) return errno;
    d[0].effective &= ~(1u << CAP_NET_RAW);
    if (syscall(SYS_capset, &h, d) != 0) return errno;
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    return fd < 0 ? errno : 0;
}

static int row_clone_newuser(void) {
    long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) {
        waitpid((pid_t)r, NULL, 0);
        return 0;
    }
    return errno;
}

struct row {
    const char *name;
    int (*run)(void);
};

static int r_unshare_user(void) { return raw(unshare(CLONE_NEWUSER)); }
static int r_unshare_mount(void) { return raw(unshare(CLONE_NEWNS)); }
static int r_keyctl(void) { return raw(syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -3, 0)); }
static int r_add_key(void) { return raw(syscall(SYS_add_key, "user", "probe", "x", 1, -2)); }
static int r_request_key(void) { return raw(syscall(SYS_request_key, "user", "probe-none", NULL, 0)); }
static int r_mount(void) { return raw(mount("none", "/tmp", "tmpfs", 0, NULL)); }
static int r_umount(void) { return raw(umount2("/no-such-mount", 0)); }
static int r_swapon(void) { return raw(syscall(SYS_swapon, "/no-such-file", 0)); }
static int r_kexec_load(void) { return raw(syscall(SYS_kexec_load, 0, 1, NULL, 0xffff0000UL)); }
static int r_open_by_handle_at(void) {
    char buf[64] = {0};
    return raw(syscall(SYS_open_by_handle_at, AT_FDCWD, buf, O_RDONLY));
}
static int r_personality_linux(void) { return raw(personality(PER_LINUX)); }
static int r_personality_no_aslr(void) { return raw(personality(ADDR_NO_RANDOMIZE)); }
static int r_raw_socket(void) {
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    return fd < 0 ? errno : 0;
}
static int r_clone3(void) { return raw(syscall(435 /* clone3 */, NULL, 0)); }
static int r_setns(void) { return raw(syscall(SYS_setns, -1, 0)); }
static int r_bpf(void) { return raw(syscall(SYS_bpf, -1, NULL, 0)); }
static int r_perf_event_open(void) { return raw(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0)); }
static int r_chroot(void) { return raw(chroot("/")); }
static int r_reboot(void) { return raw(syscall(SYS_reboot, 0, 0, 0, NULL)); }
static int r_init_module(void) { return raw(syscall(SYS_init_module, NULL, 0, "")); }
static int r_acct(void) { return raw(syscall(SYS_acct, "/no-such-file")); }
static int r_settimeofday(void) { return raw(syscall(SYS_settimeofday, NULL, NULL)); }
static int r_syslog(void) { return raw(syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0)); }
static int r_userfaultfd(void) { return raw(syscall(SYS_userfaultfd, 0)); }
static int r_iopl(void) { return raw(syscall(SYS_iopl, 0)); }
static int r_name_to_handle_at(void) {
    char buf[256] = {0};
    int mount_id;
    ((unsigned int *)buf)[0] = 128;
    return raw(syscall(SYS_name_to_handle_at, AT_FDCWD, "/", buf, &mount_id, 0));
}
static int r_io_uring_setup(void) { return raw(syscall(425, 1, NULL)); }
static int r_socket_vsock(void) {
    int fd = socket(40 /* AF_VSOCK */, SOCK_STREAM, 0);
    return fd < 0 ? errno : 0;
}
static int r_cachestat(void) { return raw(syscall(451, -1, NULL, NULL, 0)); }
static int r_not_yet_a_syscall(void) { return raw(syscall(499)); }
static int r_i386_getpid(void) { return i386_call(20, 0, 0); }
static int r_i386_unshare(void) { return i386_call(310, CLONE_NEWUSER, 0); }
static int r_x32_getpid(void) { return raw(syscall(39 | 0x40000000)); }
static int r_x32_unshare(void) { return raw(syscall(272 | 0x40000000, CLONE_NEWUSER)); }
static int r_getpid(void) { return raw(syscall(SYS_getpid)); }
static int r_mkdir(void) { return raw(syscall(SYS_mkdir, "/tmp/probe-dir", 0755)); }

static const struct row rows[] = {
    {"unshare-user", r_unshare_user},
    {"unshare-mount", r_unshare_mount},
    {"clone-newuser", row_clone_newuser},
    {"keyctl", r_keyctl},
    {"add_key", r_add_key},
    {"request_key", r_request_key},
    {"mount", r_mount},
    {"umount2", r_umount},
    {"swapon", r_swapon},
    {"kexec_load", r_kexec_load},
    {"open_by_handle_at", r_open_by_handle_at},
    {"personality-linux", r_personality_linux},
    {"personality-no-aslr", r_personality_no_aslr},
    {"ptrace-child", row_ptrace_child},
    {"raw-socket", r_raw_socket},
    {"raw-socket-without-net-raw", row_raw_socket_without_net_raw},
    {"clone3", r_clone3},
    {"setns", r_setns},
    {"bpf", r_bpf},
    {"perf_event_open", r_perf_event_open},
    {"chroot", r_chroot},
    {"reboot", r_reboot},
    {"init_module", r_init_module},
    {"acct", r_acct},
    {"settimeofday", r_settimeofday},
    {"syslog", r_syslog},
    {"userfaultfd", r_userfaultfd},
    {"iopl", r_iopl},
    {"name_to_handle_at", r_name_to_handle_at},
    {"io_uring_setup", r_io_uring_setup},
    {"socket-vsock", r_socket_vsock},
    {"cachestat", r_cachestat},
    {"syscall-499", r_not_yet_a_syscall},
    {"i386-getpid", r_i386_getpid},
    {"i386-unshare", r_i386_unshare},
    {"x32-getpid", r_x32_getpid},
    {"x32-unshare", r_x32_unshare},
    {"getpid", r_getpid},
    {"mkdir", r_mkdir},
};

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int p[2];
        if (pipe(p) != 0) return 1;
        pid_t c = fork();
        if (c == 0) {
            close(p[0]);
            alarm(5);
            int e = rows[i].run();
            if (write(p[1], &e, sizeof e) != sizeof e) _exit(2);
            _exit(0);
        }
        close(p[1]);
        int e = -1, status = 0;
        ssize_t n = read(p[0], &e, sizeof e);
        close(p[0]);
        waitpid(c, &status, 0);
        if (n == sizeof e)
            printf("%s %s\n", rows[i].name, name_of(e));
        else if (WIFSIGNALED(status))
            printf("%s killed-by-%d\n", rows[i].name, WTERMSIG(status));
        else
            printf("%s no-answer\n", rows[i].name);
    }
    return 0;
}
