//! An OCI `linux.seccomp` → a classic BPF program the kernel runs on every system call.
//!
//! ferry compiles its own filters instead of using libseccomp (not on the offline hosts, and a C
//! dependency of a static binary) or the `seccompiler` crate (one architecture and one match
//! action per filter, where Docker's profile spans x86_64, x86 and x32 and returns ENOSYS for
//! `clone3` next to its allow-list). The semantics are libseccomp's as runc drives it:
//!
//! - the program first checks `seccomp_data.arch`; an architecture outside the list is killed;
//! - a call whose number is above the highest one the profile names gets `ENOSYS` when the
//!   default action denies (runc's patch: glibc falls back from a new call it is told does not
//!   exist, where EPERM would be an error);
//! - a syscall's rules are tried in the profile's order, the first whose conditions all hold
//!   decides; a rule that repeats the default action changes nothing and is skipped;
//! - conditions on 64-bit arguments compare both 32-bit halves; on 32-bit ABIs only the low one;
//! - rules naming a call this architecture does not have are skipped.
//!
//! Calls are found by a binary search over their numbers, so a call costs about a dozen
//! instructions however long the allow-list is (kernels before 5.11 have no filter cache).

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use super::arch::{Target, X32_SYSCALL_BIT};
use super::{Program, SeccompError, SockFilter};

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ: u16 = 0x15;
const JMP_JGT: u16 = 0x25;
const JMP_JGE: u16 = 0x35;
const JMP_JSET: u16 = 0x45;
const ALU_AND: u16 = 0x54;
const RET: u16 = 0x06;

// seccomp return values (linux/seccomp.h).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// The kernel's limit on a filter's length (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;
/// Calls per leaf of the search tree, tested one after the other.
const LEAF: usize = 6;
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The filter's flags for `seccomp(2)` (`SECCOMP_FILTER_FLAG_*`).
pub fn flags(profile: &LinuxSeccomp) -> Result<u32, SeccompError> {
    let mut f = 0;
    for flag in profile.flags().as_deref().unwrap_or_default() {
        f |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 1,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => 2,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => 4,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(SeccompError::Unsupported(
                    "the flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (ferry has no notify agent)"
                        .into(),
                ));
            }
        };
    }
    Ok(f)
}

/// The `SECCOMP_RET_*` value of an action.
fn ret_value(action: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, SeccompError> {
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | (errno.unwrap_or(EPERM) & 0xffff),
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | (errno.unwrap_or(EPERM) & 0xffff),
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Unsupported(
                "the action SCMP_ACT_NOTIFY (ferry has no notify agent)".into(),
            ));
        }
    })
}

/// One rule of one call: its conditions (all must hold) and its return value.
#[derive(Debug, Clone)]
struct Rule {
    args: Vec<LinuxSeccompArg>,
    ret: u32,
}

/// A jump target, resolved once the program is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Label(usize);

/// Where a conditional jump goes: on to the next instruction, over it, or to a label.
#[derive(Debug, Clone, Copy)]
enum Target8 {
    Next,
    SkipOne,
    Label(Label),
}

#[derive(Debug, Clone)]
enum Insn {
    Stmt(u16, u32),
    Jump(u16, u32, Target8, Target8),
    Ja(Label),
    Bind(Label),
}

#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels)
    }
    fn bind(&mut self, l: Label) {
        self.insns.push(Insn::Bind(l));
    }
    fn load(&mut self, offset: u32) {
        self.insns.push(Insn::Stmt(LD_W_ABS, offset));
    }
    fn and(&mut self, k: u32) {
        self.insns.push(Insn::Stmt(ALU_AND, k));
    }
    fn ret(&mut self, k: u32) {
        self.insns.push(Insn::Stmt(RET, k));
    }
    fn ja(&mut self, l: Label) {
        self.insns.push(Insn::Ja(l));
    }
    fn jump(&mut self, op: u16, k: u32, t: Target8, f: Target8) {
        self.insns.push(Insn::Jump(op, k, t, f));
    }
    /// `if A == k` → the next instruction, else skip it (the usual "jeq k, then JA or RET").
    fn if_eq_next(&mut self, k: u32) {
        self.jump(JMP_JEQ, k, Target8::Next, Target8::SkipOne);
    }

    fn finish(self) -> Result<Vec<SockFilter>, SeccompError> {
        // Addresses of labels, and of each real instruction.
        let mut addr = BTreeMap::new();
        let mut pc = 0usize;
        for i in &self.insns {
            match i {
                Insn::Bind(l) => {
                    addr.insert(*l, pc);
                }
                _ => pc += 1,
            }
        }
        if pc > MAX_INSNS {
            return Err(SeccompError::TooLong(pc));
        }
        let mut out = Vec::with_capacity(pc);
        for i in &self.insns {
            let here = out.len();
            let rel = |l: Label| -> Result<usize, SeccompError> {
                let to = *addr
                    .get(&l)
                    .ok_or(SeccompError::Internal("unbound label"))?;
                to.checked_sub(here + 1)
                    .ok_or(SeccompError::Internal("backward jump"))
            };
            let off8 = |t: Target8| -> Result<u8, SeccompError> {
                match t {
                    Target8::Next => Ok(0),
                    Target8::SkipOne => Ok(1),
                    Target8::Label(l) => u8::try_from(rel(l)?)
                        .map_err(|_| SeccompError::Internal("conditional jump too far")),
                }
            };
            match i {
                Insn::Bind(_) => {}
                Insn::Stmt(code, k) => out.push(SockFilter {
                    code: *code,
                    jt: 0,
                    jf: 0,
                    k: *k,
                }),
                Insn::Jump(code, k, t, f) => out.push(SockFilter {
                    code: *code,
                    jt: off8(*t)?,
                    jf: off8(*f)?,
                    k: *k,
                }),
                Insn::Ja(l) => out.push(SockFilter {
                    code: JMP_JA,
                    jt: 0,
                    jf: 0,
                    k: rel(*l)? as u32,
                }),
            }
        }
        Ok(out)
    }
}

/// Compiles `profile` for the architectures it lists (the native one always included).
pub fn compile(profile: &LinuxSeccomp, native: Arch) -> Result<Program, SeccompError> {
    let default = ret_value(
        profile.default_action(),
        profile.default_errno_ret().or(Some(EPERM)),
    )?;
    let mut arches: Vec<Arch> = vec![native];
    for a in profile.architectures().as_deref().unwrap_or_default() {
        if !arches.contains(a) {
            arches.push(*a);
        }
    }
    let mut targets = Vec::new();
    for a in arches {
        let t = Target::of(a).ok_or_else(|| {
            SeccompError::Unsupported(format!("the architecture {a:?} in a seccomp profile"))
        })?;
        targets.push(t);
    }

    // Per architecture: syscall number → its rules in the profile's order.
    let mut tables: Vec<(Target, BTreeMap<u32, Vec<Rule>>, u32)> = Vec::new();
    for t in &targets {
        let mut calls: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
        let mut highest = 0;
        for s in profile.syscalls().as_deref().unwrap_or_default() {
            let ret = ret_value(s.action(), s.errno_ret())?;
            for name in s.names() {
                let Some(nr) = t.number(name) else { continue };
                highest = highest.max(nr);
                if ret == default {
                    continue;
                }
                let args = s.args().clone().unwrap_or_default();
                for a in &args {
                    if a.index() > 5 {
                        return Err(SeccompError::Invalid(format!(
                            "argument index {} of {name} (a call has 6)",
                            a.index()
                        )));
                    }
                }
                let rules = calls.entry(nr).or_default();
                // Conditions on the same argument cannot all hold at once in libseccomp's
                // model; runc then adds each as a rule of its own (either one matches).
                let mut seen = [false; 6];
                let repeats = args
                    .iter()
                    .any(|a| std::mem::replace(&mut seen[a.index()], true));
                if repeats {
                    rules.extend(args.iter().map(|a| Rule {
                        args: vec![*a],
                        ret,
                    }));
                } else {
                    rules.push(Rule { args, ret });
                }
            }
        }
        tables.push((*t, calls, highest));
    }

    let enosys_stub = !matches!(
        profile.default_action(),
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    ) && profile.default_errno_ret() != Some(ENOSYS);

    let mut asm = Asm::default();
    // Which architecture? One section per AUDIT_ARCH value (x86_64 and x32 share one).
    asm.load(OFF_ARCH);
    let mut audits: Vec<u32> = Vec::new();
    for (t, _, _) in &tables {
        if !audits.contains(&t.audit) {
            audits.push(t.audit);
        }
    }
    let section_labels: Vec<Label> = audits.iter().map(|_| asm.label()).collect();
    for (audit, l) in audits.iter().zip(&section_labels) {
        asm.if_eq_next(*audit);
        asm.ja(*l);
    }
    // An architecture the profile does not name: libseccomp's "bad arch" action.
    asm.ret(RET_KILL_THREAD);

    let mut bodies: Vec<(Label, Vec<Rule>, bool)> = Vec::new();
    for (audit, l) in audits.iter().zip(&section_labels) {
        asm.bind(*l);
        asm.load(OFF_NR);
        let main = tables
            .iter()
            .find(|(t, _, _)| t.audit == *audit && t.arch != Arch::ScmpArchX32);
        let x32 = tables
            .iter()
            .find(|(t, _, _)| t.audit == *audit && t.arch == Arch::ScmpArchX32);
        if *audit == Target::of(Arch::ScmpArchX86_64).map_or(0, |t| t.audit) {
            // x86_64's section: calls with bit 30 are x32's.
            let x32_label = asm.label();
            asm.jump(JMP_JSET, X32_SYSCALL_BIT, Target8::Next, Target8::SkipOne);
            asm.ja(x32_label);
            match main {
                Some(m) => emit_arch(&mut asm, m, default, enosys_stub, &mut bodies),
                None => asm.ret(RET_KILL_THREAD),
            }
            asm.bind(x32_label);
            match x32 {
                Some(x) => emit_arch(&mut asm, x, default, enosys_stub, &mut bodies),
                None => asm.ret(RET_KILL_THREAD),
            }
        } else if let Some(m) = main.or(x32) {
            emit_arch(&mut asm, m, default, enosys_stub, &mut bodies);
        }
    }
    for (label, rules, args_32bit) in bodies {
        asm.bind(label);
        for rule in rules {
            let next = asm.label();
            for a in &rule.args {
                emit_condition(&mut asm, a, args_32bit, next);
            }
            asm.ret(rule.ret);
            asm.bind(next);
        }
        asm.ret(default);
    }
    Ok(Program {
        insns: asm.finish()?,
        flags: flags(profile)?,
    })
}

/// One architecture's dispatch: the ENOSYS stub, then a search tree over its call numbers.
fn emit_arch(
    asm: &mut Asm,
    (target, calls, highest): &(Target, BTreeMap<u32, Vec<Rule>>, u32),
    default: u32,
    enosys_stub: bool,
    bodies: &mut Vec<(Label, Vec<Rule>, bool)>,
) {
    if enosys_stub && *highest > 0 {
        asm.jump(JMP_JGT, *highest, Target8::Next, Target8::SkipOne);
        asm.ret(RET_ERRNO | ENOSYS);
    }
    let entries: Vec<(u32, &Vec<Rule>)> = calls.iter().map(|(n, r)| (*n, r)).collect();
    emit_tree(asm, &entries, default, target.args_32bit, bodies);
}

fn emit_tree(
    asm: &mut Asm,
    entries: &[(u32, &Vec<Rule>)],
    default: u32,
    args_32bit: bool,
    bodies: &mut Vec<(Label, Vec<Rule>, bool)>,
) {
    if entries.len() <= LEAF {
        for (nr, rules) in entries {
            asm.if_eq_next(*nr);
            match rules.as_slice() {
                [only] if only.args.is_empty() => asm.ret(only.ret),
                _ => {
                    let l = asm.label();
                    asm.ja(l);
                    bodies.push((l, (*rules).clone(), args_32bit));
                }
            }
        }
        asm.ret(default);
        return;
    }
    let mid = entries.len() / 2;
    let right = asm.label();
    // A >= pivot → the right half, else fall into the left half.
    asm.jump(JMP_JGE, entries[mid].0, Target8::Next, Target8::SkipOne);
    asm.ja(right);
    emit_tree(asm, &entries[..mid], default, args_32bit, bodies);
    asm.bind(right);
    emit_tree(asm, &entries[mid..], default, args_32bit, bodies);
}

/// One condition; falls through when it holds, jumps to `fail` when not.
fn emit_condition(asm: &mut Asm, a: &LinuxSeccompArg, args_32bit: bool, fail: Label) {
    let lo_off = OFF_ARGS + 8 * a.index() as u32 + if cfg!(target_endian = "big") { 4 } else { 0 };
    let hi_off = OFF_ARGS + 8 * a.index() as u32 + if cfg!(target_endian = "big") { 0 } else { 4 };
    let (v, v2) = (a.value(), a.value_two().unwrap_or(0));
    let (hi, lo) = ((v >> 32) as u32, v as u32);
    let fail8 = Target8::Label(fail);
    let next = Target8::Next;
    let ok = asm.label();
    let ok8 = Target8::Label(ok);
    use LinuxSeccompOperator as Op;
    match a.op() {
        Op::ScmpCmpEq | Op::ScmpCmpMaskedEq => {
            let (mask, want) = if a.op() == Op::ScmpCmpMaskedEq {
                (v, v2)
            } else {
                (u64::MAX, v)
            };
            if !args_32bit {
                asm.load(hi_off);
                if mask >> 32 != 0xffff_ffff {
                    asm.and((mask >> 32) as u32);
                }
                asm.jump(JMP_JEQ, (want >> 32) as u32, next, fail8);
            }
            asm.load(lo_off);
            if mask as u32 != 0xffff_ffff {
                asm.and(mask as u32);
            }
            asm.jump(JMP_JEQ, want as u32, next, fail8);
        }
        Op::ScmpCmpNe => {
            if !args_32bit {
                asm.load(hi_off);
                asm.jump(JMP_JEQ, hi, next, ok8);
            }
            asm.load(lo_off);
            asm.jump(JMP_JEQ, lo, fail8, next);
        }
        // A > v: high words decide unless equal, then the low words. A < v is not A >= v
        // and A <= v is not A > v: the same test with its outcomes swapped. (`ok` is bound
        // right after the last jump, so jumping there is falling through.)
        Op::ScmpCmpGt | Op::ScmpCmpGe | Op::ScmpCmpLt | Op::ScmpCmpLe => {
            let (low_op, holds, fails) = match a.op() {
                Op::ScmpCmpGt => (JMP_JGT, ok8, fail8),
                Op::ScmpCmpGe => (JMP_JGE, ok8, fail8),
                Op::ScmpCmpLt => (JMP_JGE, fail8, ok8),
                _ => (JMP_JGT, fail8, ok8),
            };
            if !args_32bit {
                asm.load(hi_off);
                asm.jump(JMP_JGT, hi, holds, next);
                asm.jump(JMP_JEQ, hi, next, fails);
            }
            asm.load(lo_off);
            asm.jump(low_op, lo, holds, fails);
        }
    }
    asm.bind(ok);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Runs a filter the way the kernel does, for one call.
    pub fn eval(p: &[SockFilter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            pc += 1;
            let cond = |taken: bool| if taken { i.jt as usize } else { i.jf as usize };
            match i.code {
                LD_W_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
                }
                ALU_AND => acc &= i.k,
                RET => return i.k,
                JMP_JA => pc += i.k as usize,
                JMP_JEQ => pc += cond(acc == i.k),
                JMP_JGT => pc += cond(acc > i.k),
                JMP_JGE => pc += cond(acc >= i.k),
                JMP_JSET => pc += cond(acc & i.k != 0),
                other => panic!("unknown opcode {other:#x}"),
            }
        }
    }

    fn arg(index: usize, op: LinuxSeccompOperator, value: u64, two: u64) -> LinuxSeccompArg {
        oci_spec::runtime::LinuxSeccompArgBuilder::default()
            .index(index)
            .op(op)
            .value(value)
            .value_two(two)
            .build()
            .unwrap()
    }

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    const X86_64: u32 = 0xc000_003e;
    const I386: u32 = 0x4000_0003;

    #[test]
    fn conditions_compare_64_bit_arguments() {
        use LinuxSeccompOperator as Op;
        let cases: &[(LinuxSeccompArg, u64, bool)] = &[
            (arg(0, Op::ScmpCmpEq, 5, 0), 5, true),
            (arg(0, Op::ScmpCmpEq, 5, 0), 5 | 1 << 32, false),
            (arg(0, Op::ScmpCmpNe, 5, 0), 5, false),
            (arg(0, Op::ScmpCmpNe, 5, 0), 5 | 1 << 32, true),
            (arg(1, Op::ScmpCmpLt, 38, 0), 37, true),
            (arg(1, Op::ScmpCmpLt, 38, 0), 38, false),
            (arg(1, Op::ScmpCmpLt, 38, 0), 1 << 33, false),
            (arg(1, Op::ScmpCmpLe, 38, 0), 38, true),
            (arg(2, Op::ScmpCmpGt, 40, 0), 41, true),
            (arg(2, Op::ScmpCmpGt, 40, 0), 40, false),
            (arg(2, Op::ScmpCmpGt, 40, 0), 1 << 40, true),
            (arg(2, Op::ScmpCmpGe, 1 << 35, 0), 1 << 35, true),
            (arg(2, Op::ScmpCmpGe, 1 << 35, 0), (1 << 35) - 1, false),
            (arg(5, Op::ScmpCmpMaskedEq, 0x7e02_0000, 0), 0x11, true),
            (
                arg(5, Op::ScmpCmpMaskedEq, 0x7e02_0000, 0),
                0x1002_0011,
                false,
            ),
        ];
        for (a, value, allowed) in cases {
            let mut s: LinuxSeccomp =
                profile(r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[]}"#);
            s.set_syscalls(Some(vec![
                oci_spec::runtime::LinuxSyscallBuilder::default()
                    .names(vec!["getpid".to_string()])
                    .action(LinuxSeccompAction::ScmpActAllow)
                    .args(vec![*a])
                    .build()
                    .unwrap(),
            ]));
            let p = compile(&s, Arch::ScmpArchX86_64).unwrap();
            let mut args = [0u64; 6];
            args[a.index()] = *value;
            let got = eval(&p.insns, X86_64, 39, args);
            assert_eq!(
                got == RET_ALLOW,
                *allowed,
                "{a:?} with {value:#x}: {got:#x}"
            );
        }
    }

    #[test]
    fn architectures_numbers_and_the_enosys_stub() {
        let s = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{"names":["getpid","unshare_nope","read"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["clone3"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
        );
        let p = compile(&s, Arch::ScmpArchX86_64).unwrap();
        let e = |arch, nr| eval(&p.insns, arch, nr, [0; 6]);
        assert_eq!(e(X86_64, 39), RET_ALLOW); // getpid
        assert_eq!(e(I386, 20), RET_ALLOW); // getpid on i386
        assert_eq!(e(I386, 39), RET_ERRNO | 13); // i386 39 is mkdir
        assert_eq!(e(X86_64, 83), RET_ERRNO | 13); // mkdir
        assert_eq!(e(X86_64, 272), RET_ERRNO | 1); // unshare: not listed
        assert_eq!(e(X86_64, 435), RET_ERRNO | 38); // clone3
        assert_eq!(e(X86_64, 436), RET_ERRNO | 38); // above the highest named: ENOSYS
        assert_eq!(e(X86_64, 39 | X32_SYSCALL_BIT), RET_ALLOW); // x32 getpid
        assert_eq!(e(0xc000_00b7, 39), RET_KILL_THREAD); // aarch64: not in the list
        // Without x32 in the list, an x32 call is an unknown architecture.
        let s = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
                "syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        let p = compile(&s, Arch::ScmpArchX86_64).unwrap();
        assert_eq!(
            eval(&p.insns, X86_64, 39 | X32_SYSCALL_BIT, [0; 6]),
            RET_KILL_THREAD
        );
        assert_eq!(eval(&p.insns, I386, 20, [0; 6]), RET_KILL_THREAD);
    }

    #[test]
    fn first_matching_rule_decides_and_repeated_arguments_are_alternatives() {
        let s = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":22,
                 "args":[{"index":0,"value":1,"op":"SCMP_CMP_EQ"},{"index":0,"value":2,"op":"SCMP_CMP_EQ"}]},
                {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":1,
                 "args":[{"index":0,"value":3,"op":"SCMP_CMP_GE"},{"index":1,"value":0,"op":"SCMP_CMP_EQ"}]},
                {"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        let p = compile(&s, Arch::ScmpArchX86_64).unwrap();
        let e = |a0, a1| eval(&p.insns, X86_64, 135, [a0, a1, 0, 0, 0, 0]);
        assert_eq!(e(1, 0), RET_ERRNO | 22);
        assert_eq!(e(2, 9), RET_ERRNO | 22);
        assert_eq!(e(4, 0), RET_ERRNO | 1);
        assert_eq!(e(4, 1), RET_ALLOW);
        // Default allow: no ENOSYS stub, and the redundant allow rule is not compiled.
        assert_eq!(eval(&p.insns, X86_64, 460, [0; 6]), RET_ALLOW);
    }

    #[test]
    fn a_long_list_stays_within_the_kernels_limits() {
        let names: Vec<String> = (0..460)
            .filter_map(syscalls::x86_64::Sysno::new)
            .map(|s| s.name().to_string())
            .collect();
        let json = serde_json::json!({"defaultAction":"SCMP_ACT_ERRNO",
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
            "syscalls":[{"names":names,"action":"SCMP_ACT_ALLOW"}]});
        let s: LinuxSeccomp = serde_json::from_value(json).unwrap();
        let p = compile(&s, Arch::ScmpArchX86_64).unwrap();
        assert!(p.insns.len() < MAX_INSNS, "{}", p.insns.len());
        for n in [0u32, 1, 59, 231, 333, 459] {
            assert_eq!(eval(&p.insns, X86_64, n, [0; 6]), RET_ALLOW, "{n}");
        }
        assert_eq!(eval(&p.insns, X86_64, 500, [0; 6]), RET_ERRNO | ENOSYS);
    }
}
