"""The OCI ``linux.seccomp`` section: Docker's default policy, or a user profile.

The default is an allowlist (everything else fails with EPERM) equivalent to
Docker's default profile: ordinary syscalls are allowed; the dangerous ones
are only allowed when the container holds the capability that guards them
in the kernel anyway (CAP_SYS_ADMIN unlocks mount/unshare/setns/..., and so
on), so ``--cap-add`` keeps working as users expect. Without CAP_SYS_ADMIN,
``clone`` may not create namespaces and ``clone3`` (whose flags seccomp
cannot inspect) fails with ENOSYS so that libcs fall back to ``clone``.

Rules are Python data, filtered per container by its bounding set, the host
architecture and the kernel version. A user profile (``--security-opt
seccomp=profile.json``) may be in Docker's format (``archMap``,
``includes``/``excludes``) or already in OCI form.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.records import record

ALLOW = "SCMP_ACT_ALLOW"
ERRNO = "SCMP_ACT_ERRNO"


@record(frozen=True)
class Rule:
    """One syscall rule with Docker's include/exclude conditions."""

    names: tuple[str, ...]
    action: str = ALLOW
    args: tuple[dict[str, Any], ...] = ()
    errno_ret: int | None = None
    caps: tuple[str, ...] = ()  # included only if ALL are in the bounding set
    arches: tuple[str, ...] = ()  # included only on these (Go-style) arches
    min_kernel: tuple[int, int] | None = None
    not_caps: tuple[str, ...] = ()  # excluded if ANY is in the bounding set
    not_arches: tuple[str, ...] = ()
    not_min_kernel: tuple[int, int] | None = None

    def applies(self, bounding: frozenset[str], arch: str, kernel: tuple[int, int]) -> bool:
        if self.not_arches and arch in self.not_arches:
            return False
        if self.not_caps and any(c in bounding for c in self.not_caps):
            return False
        if self.not_min_kernel is not None and kernel >= self.not_min_kernel:
            return False
        if self.arches and arch not in self.arches:
            return False
        if self.caps and not all(c in bounding for c in self.caps):
            return False
        return self.min_kernel is None or kernel >= self.min_kernel

    def to_oci(self) -> dict[str, Any]:
        out: dict[str, Any] = {"names": list(self.names), "action": self.action}
        if self.args:
            out["args"] = [dict(a) for a in self.args]
        if self.errno_ret is not None:
            out["errnoRet"] = self.errno_ret
        return out


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Syscalls any process may make: file and memory management, signals, time,
# sockets, IPC, scheduling, process control without privilege.
_ALLOWED = _names(
    """
    accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod
    chown chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64
    clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 close
    close_range connect copy_file_range creat dup dup2 dup3 epoll_create
    epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
    epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat
    faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat
    fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
    flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64
    fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait
    futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid
    getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer
    getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
    getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid
    getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32
    getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel
    ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get
    ioprio_set io_setup io_submit io_uring_enter io_uring_register io_uring_setup
    ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
    lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr
    lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier memfd_create
    memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
    mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
    mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd
    msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
    _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
    pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv
    preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev
    pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
    recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
    restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask
    rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
    rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
    sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
    sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
    sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select
    semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64
    sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
    setgroups setgroups32 setitimer setpgid setpriority setregid setregid32
    setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
    set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
    setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd
    signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64
    statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee
    tgkill time timer_create timer_delete timer_getoverrun timer_gettime
    timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
    timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate
    truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
    utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
    """
)

# Namespace flags of clone(2): creating namespaces needs CAP_SYS_ADMIN.
_CLONE_NS_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
)


def _eq(index: int, value: int) -> dict[str, Any]:
    return {"index": index, "value": value, "op": "SCMP_CMP_EQ"}


def _no_ns_flags(index: int) -> dict[str, Any]:
    return {"index": index, "value": _CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}


_CAP_RULES: tuple[tuple[str, str], ...] = (
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    (
        "CAP_SYS_ADMIN",
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie"
        " mount mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd"
        " setdomainname sethostname setns syslog umount umount2 unshare",
    ),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_CHROOT", "chroot"),
    ("CAP_SYS_MODULE", "delete_module init_module finit_module"),
    ("CAP_SYS_PACCT", "acct"),
    (
        "CAP_SYS_PTRACE",
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    ),
    ("CAP_SYS_RAWIO", "iopl ioperm"),
    ("CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    ("CAP_SYS_NICE", "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
)

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(_ALLOWED),
    # Since 4.8 seccomp can no longer be bypassed with ptrace.
    Rule(_names("process_vm_readv process_vm_writev ptrace"), min_kernel=(4, 8)),
    # Any socket family but AF_VSOCK (40), which reaches the hypervisor's host.
    Rule(("socket",), args=({"index": 0, "value": 40, "op": "SCMP_CMP_NE"},)),
    # personality(2): only the harmless personas (Linux, 32-bit ABI, UNAME26, query).
    *(Rule(("personality",), args=(_eq(0, v),)) for v in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)),
    Rule(_names("sync_file_range2 swapcontext"), arches=("ppc64le",)),
    Rule(
        _names(
            "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"
        ),
        arches=("arm", "arm64"),
    ),
    Rule(("arch_prctl",), arches=("amd64", "x32")),
    Rule(("modify_ldt",), arches=("amd64", "x32", "x86")),
    Rule(
        _names("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
        arches=("s390", "s390x"),
    ),
    Rule(("riscv_flush_icache",), arches=("riscv64",)),
    *(Rule(_names(names), caps=(cap,)) for cap, names in _CAP_RULES),
    # Without CAP_SYS_ADMIN: clone without namespace flags (flags are arg 1 on s390).
    Rule(
        ("clone",),
        args=(_no_ns_flags(0),),
        not_caps=("CAP_SYS_ADMIN",),
        not_arches=("s390", "s390x"),
    ),
    Rule(
        ("clone",),
        args=(_no_ns_flags(1),),
        arches=("s390", "s390x"),
        not_caps=("CAP_SYS_ADMIN",),
    ),
    # clone3's flags live in memory seccomp cannot read: ENOSYS makes libcs use clone.
    Rule(("clone3",), action=ERRNO, errno_ret=errno.ENOSYS, not_caps=("CAP_SYS_ADMIN",)),
)

# machine -> (Go-style arch name used by rule conditions, seccomp architectures)
_ARCHES: dict[str, tuple[str, list[str]]] = {
    "x86_64": ("amd64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    "aarch64": ("arm64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
    "arm64": ("arm64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
    "armv7l": ("arm", ["SCMP_ARCH_ARM"]),
    "i686": ("x86", ["SCMP_ARCH_X86"]),
    "ppc64le": ("ppc64le", ["SCMP_ARCH_PPC64LE"]),
    "s390x": ("s390x", ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]),
    "riscv64": ("riscv64", ["SCMP_ARCH_RISCV64"]),
}
# Docker's archMap keys are seccomp names; rule "arches" use these Go-style names.
_SECCOMP_TO_NATIVE = {
    "SCMP_ARCH_X86_64": "amd64",
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_AARCH64": "arm64",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_RISCV64": "riscv64",
}


def _host() -> tuple[str, list[str], tuple[int, int]]:
    machine = os.uname().machine
    native, arches = _ARCHES.get(machine, (machine, []))
    release = os.uname().release
    numbers = []
    for piece in release.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece else ""
        numbers.append(int(digits or 0))
    while len(numbers) < 2:
        numbers.append(0)
    return native, arches, (numbers[0], numbers[1])


HOST_ARCH, HOST_SECCOMP_ARCHES, HOST_KERNEL = _host()

# The rules that do not depend on capabilities, filtered once for this host.
_STATIC = [
    r
    for r in DEFAULT_RULES
    if not r.caps and not r.not_caps and r.applies(frozenset(), HOST_ARCH, HOST_KERNEL)
]
_CAP_DEPENDENT = [r for r in DEFAULT_RULES if r.caps or r.not_caps]


def default_profile(bounding: Iterable[str]) -> dict[str, Any]:
    """Docker's default policy for a container with this bounding capability set."""
    caps = frozenset(bounding)
    syscalls = [r.to_oci() for r in _STATIC]  # fresh dicts: callers may edit the config
    syscalls.extend(r.to_oci() for r in _CAP_DEPENDENT if r.applies(caps, HOST_ARCH, HOST_KERNEL))
    return {
        "defaultAction": ERRNO,
        "defaultErrnoRet": errno.EPERM,
        "architectures": list(HOST_SECCOMP_ARCHES),
        "syscalls": syscalls,
    }


# -- user profiles -----------------------------------------------------------


def _kernel(value: Any, where: str) -> tuple[int, int]:
    try:
        major, _, minor = str(value).partition(".")
        return int(major), int(minor.split(".")[0] or 0)
    except ValueError:
        raise InvalidArgument(
            f"seccomp profile: invalid kernel version {value!r} in {where}"
        ) from None


def _filter(data: Any, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidArgument(f"seccomp profile: {where} must be an object")
    out: dict[str, Any] = {
        "caps": tuple(data.get("caps") or ()),
        "arches": tuple(data.get("arches") or ()),
    }
    if data.get("minKernel"):
        out["min_kernel"] = _kernel(data["minKernel"], where)
    return out


def _rule_from_json(entry: Any) -> Rule:
    if not isinstance(entry, dict):
        raise InvalidArgument("seccomp profile: each syscalls entry must be an object")
    name = entry.get("name")
    names = entry.get("names")
    if name and names:
        raise InvalidArgument("seccomp profile: use either 'name' or 'names', not both")
    listed = [name] if name else list(names or [])
    if not listed or not all(isinstance(n, str) for n in listed):
        raise InvalidArgument("seccomp profile: a syscalls entry lists no syscall names")
    action = entry.get("action")
    if not isinstance(action, str) or not action.startswith("SCMP_ACT_"):
        raise InvalidArgument(f"seccomp profile: invalid action {action!r} for {listed[0]}")
    inc = _filter(entry.get("includes"), "includes")
    exc = _filter(entry.get("excludes"), "excludes")
    return Rule(
        names=tuple(listed),
        action=action,
        args=tuple(entry.get("args") or ()),
        errno_ret=entry.get("errnoRet"),
        caps=inc.get("caps", ()),
        arches=inc.get("arches", ()),
        min_kernel=inc.get("min_kernel"),
        not_caps=exc.get("caps", ()),
        not_arches=exc.get("arches", ()),
        not_min_kernel=exc.get("min_kernel"),
    )


def profile_from_json(text: str, bounding: Iterable[str]) -> dict[str, Any]:
    """An OCI seccomp section from a Docker-format (or OCI-format) profile."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise InvalidArgument(f"decoding seccomp profile failed: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("defaultAction"), str):
        raise InvalidArgument("decoding seccomp profile failed: missing defaultAction")
    if data.get("architectures") and data.get("archMap"):
        raise InvalidArgument("seccomp profile: use either 'architectures' or 'archMap', not both")
    arches: list[str] = list(data.get("architectures") or [])
    for item in data.get("archMap") or []:
        arch = item.get("architecture")
        if _SECCOMP_TO_NATIVE.get(arch) == HOST_ARCH or (
            HOST_SECCOMP_ARCHES and arch == HOST_SECCOMP_ARCHES[0]
        ):
            arches = [arch, *(item.get("subArchitectures") or [])]
            break
    caps = frozenset(bounding)
    rules = [_rule_from_json(entry) for entry in data.get("syscalls") or []]
    out: dict[str, Any] = {"defaultAction": data["defaultAction"]}
    if data.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = data["defaultErrnoRet"]
    if arches:
        out["architectures"] = arches
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if data.get(key):
            out[key] = data[key]
    out["syscalls"] = [r.to_oci() for r in rules if r.applies(caps, HOST_ARCH, HOST_KERNEL)]
    return out


def read_profile_option(value: str) -> str:
    """``seccomp=VALUE`` as stored: "unconfined", "builtin" or the profile's JSON text.

    Like the Docker CLI, a path is read when the container is created, so a
    later change to the file does not change the container.
    """
    if value in ("unconfined", "builtin", "") or value.lstrip().startswith("{"):
        return value
    try:
        with open(value, encoding="utf-8") as f:
            return f.read()
    except OSError as err:
        raise InvalidArgument(
            f"opening seccomp profile ({value}) failed: {err.strerror or err}"
        ) from None


def seccomp_section(
    option: str | None, bounding: Iterable[str], *, privileged: bool
) -> dict[str, Any] | None:
    """The OCI seccomp section for a ``seccomp=`` option (None: the default).

    ``--privileged`` disables seccomp whatever the option says, as in Docker.
    """
    if privileged or option == "unconfined":
        return None
    if option in (None, "", "builtin"):
        return default_profile(bounding)
    assert option is not None
    return profile_from_json(read_profile_option(option), bounding)


# -- security options ---------------------------------------------------------


@record
class SecurityOptions:
    no_new_privileges: bool = False
    seccomp: str | None = None  # None: default; "unconfined"; profile JSON text or path
    apparmor: str | None = None
    systempaths_unconfined: bool = False
    writable_cgroups: bool = False


_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


def _bool_opt(value: str, opt: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')


def parse_security_opts(opts: list[str]) -> SecurityOptions:
    """Docker's ``--security-opt`` values (``key=value``; ``key:value`` still accepted)."""
    out = SecurityOptions()
    for opt in opts:
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        if opt == "disable":
            continue  # SELinux label disable: no SELinux here
        sep = "=" if "=" in opt else ":" if ":" in opt else None
        if sep is None:
            raise InvalidArgument(f'invalid --security-opt 1: "{opt}"')
        key, _, value = opt.partition(sep)
        if key == "label":
            continue  # SELinux labels: not supported on this host, ignored as Docker does
        elif key == "apparmor":
            out.apparmor = value
        elif key == "seccomp":
            out.seccomp = value
        elif key == "no-new-privileges":
            out.no_new_privileges = _bool_opt(value, opt)
        elif key == "systempaths" and value == "unconfined":
            out.systempaths_unconfined = True
        elif key == "writable-cgroups":
            out.writable_cgroups = _bool_opt(value, opt)
        else:
            raise InvalidArgument(f'invalid --security-opt 2: "{opt}"')
    return out


def normalize_security_opts(opts: list[str]) -> list[str]:
    """Validate the options at create time and store a seccomp profile's content, like Docker."""
    parse_security_opts(opts)
    out = []
    for opt in opts:
        key, sep, value = opt.partition("=")
        if key == "seccomp" and sep:
            opt = "seccomp=" + read_profile_option(value)
        out.append(opt)
    return out


@lru_cache(maxsize=1)
def host_has_apparmor() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False
