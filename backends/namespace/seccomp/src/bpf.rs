//! The seccomp program generator: its system-call dispatch is a binary search, not a linear
//! chain.
//!
//! Why not just seccompiler's output: it tests the rules one system call
//! after another, and when a filter is installed the kernel emulates it once
//! per system-call number to build its "always allowed" cache. For a chain of
//! ~50 rules that emulation dominated the cost of `seccomp(2)` (0.2–0.3 ms per
//! process, on the critical path of every `exec`). Here every system call
//! reaches its verdict after about a dozen instructions at most, so installing is cheap
//! and so is the per-call run time. seccompiler stays the reference the tests compare against.

use std::collections::BTreeMap;

use crate::Insn;

/// What the program answers for a system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Allow,
    Errno(u16),
    KillProcess,
}

impl Verdict {
    /// The filter's return value (`SECCOMP_RET_*`).
    pub fn ret_value(self) -> u32 {
        match self {
            Verdict::Allow => 0x7fff_0000,
            Verdict::Errno(e) => 0x0005_0000 | u32::from(e),
            Verdict::KillProcess => 0x8000_0000,
        }
    }
}

/// The rule of one system call (calls without a rule get the policy's `default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Every call gets `Verdict`.
    Always(Verdict),
    /// Calls whose argument `arg`, low 32 bits, equals one of `values` get
    /// `hit`, others `miss`. (ioctl request numbers are 32-bit in the
    /// kernel, so high garbage bits cannot sneak past.)
    ArgIn {
        arg: u8,
        values: Vec<u32>,
        hit: Verdict,
        miss: Verdict,
    },
    /// Calls whose argument `arg`, low 32 bits, shares a bit with `mask` get
    /// `hit`, others `miss` (`clone` takes its flags from the low 32
    /// bits only).
    ArgAnyBit {
        arg: u8,
        mask: u32,
        hit: Verdict,
        miss: Verdict,
    },
}

/// A whole policy for one architecture.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `AUDIT_ARCH_*` value this policy is for.
    pub arch: u32,
    /// Verdict for calls made through any other architecture's ABI.
    pub foreign_arch: Verdict,
    /// Calls numbered at or above this bit (x32 on `x86_64`) and their verdict.
    pub high_range: Option<(u32, Verdict)>,
    /// Verdict for calls without a rule.
    pub default: Verdict,
    /// Per-call rules, keyed by system-call number.
    pub rules: BTreeMap<u32, Rule>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BpfError {
    #[error("argument index {0} out of range")]
    BadArg(u8),
    #[error("jump too far for classic BPF ({0} instructions)")]
    JumpTooFar(usize),
    #[error("program too long ({0} instructions)")]
    TooLong(usize),
}

// Classic BPF opcodes used here.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const JA: u16 = 0x05;

// `struct seccomp_data` offsets.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// Leaves of the search tree test this many numbers one after another.
const LEAF: usize = 4;
/// The kernel's limit on a filter's length.
const MAX_INSNS: usize = 4096;

#[derive(Debug, Clone, Copy)]
enum Target {
    Next,
    Label(usize),
}

/// A forward-only assembler with labels. Conditional jumps reach 255
/// instructions; `JA` (32-bit offset) carries longer ones.
#[derive(Default)]
struct Asm {
    insns: Vec<(u16, u32, Target, Target)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.insns.len());
    }
    fn stmt(&mut self, code: u16, k: u32) {
        self.insns.push((code, k, Target::Next, Target::Next));
    }
    fn jump(&mut self, code: u16, k: u32, jt: Target, jf: Target) {
        self.insns.push((code, k, jt, jf));
    }
    /// `JA label` (its offset goes in `k`).
    fn always(&mut self, to: usize) {
        self.insns.push((JA, 0, Target::Label(to), Target::Next));
    }
    fn ret(&mut self, v: Verdict) {
        self.stmt(RET_K, v.ret_value());
    }
    fn finish(self) -> Result<Vec<Insn>, BpfError> {
        if self.insns.len() > MAX_INSNS {
            return Err(BpfError::TooLong(self.insns.len()));
        }
        let distance = |at: usize, t: Target| -> Result<usize, BpfError> {
            match t {
                Target::Next => Ok(0),
                Target::Label(l) => {
                    // Labels are placed after every jump to them (see
                    // `compile`); a missing or backward one is a bug caught
                    // here rather than a broken program.
                    let to = self.labels[l].ok_or(BpfError::JumpTooFar(usize::MAX))?;
                    to.checked_sub(at + 1)
                        .ok_or(BpfError::JumpTooFar(usize::MAX))
                }
            }
        };
        let short = |d: usize| u8::try_from(d).map_err(|_| BpfError::JumpTooFar(d));
        self.insns
            .iter()
            .enumerate()
            .map(|(i, &(code, k, jt, jf))| {
                if code == JA {
                    let d = distance(i, jt)?;
                    let k = u32::try_from(d).map_err(|_| BpfError::JumpTooFar(d))?;
                    return Ok(Insn {
                        code,
                        jt: 0,
                        jf: 0,
                        k,
                    });
                }
                Ok(Insn {
                    code,
                    jt: short(distance(i, jt)?)?,
                    jf: short(distance(i, jf)?)?,
                    k,
                })
            })
            .collect()
    }
}

fn arg_low(arg: u8) -> Result<u32, BpfError> {
    if arg > 5 {
        return Err(BpfError::BadArg(arg));
    }
    Ok(OFF_ARGS + 8 * u32::from(arg))
}

/// Instructions `emit_rule` produces for `rule`.
fn rule_len(rule: &Rule) -> usize {
    match rule {
        Rule::Always(_) => 1,
        // load, one test per value, miss, hit
        Rule::ArgIn { values, .. } => values.len() + 3,
        Rule::ArgAnyBit { .. } => 4,
    }
}

/// A rule's body, placed right after the test that selected the call; every
/// path ends in a `RET`, so all its jumps are short.
fn emit_rule(asm: &mut Asm, rule: &Rule) -> Result<(), BpfError> {
    match rule {
        Rule::Always(v) => asm.ret(*v),
        Rule::ArgIn {
            arg,
            values,
            hit,
            miss,
        } => {
            let matched = asm.label();
            asm.stmt(LD_W_ABS, arg_low(*arg)?);
            for value in values {
                asm.jump(JEQ_K, *value, Target::Label(matched), Target::Next);
            }
            asm.ret(*miss);
            asm.place(matched);
            asm.ret(*hit);
        }
        Rule::ArgAnyBit {
            arg,
            mask,
            hit,
            miss,
        } => {
            let matched = asm.label();
            asm.stmt(LD_W_ABS, arg_low(*arg)?);
            asm.jump(JSET_K, *mask, Target::Label(matched), Target::Next);
            asm.ret(*miss);
            asm.place(matched);
            asm.ret(*hit);
        }
    }
    Ok(())
}

/// Instructions `search` produces for `calls`.
fn search_len(calls: &[(u32, &Rule)]) -> usize {
    if calls.len() <= LEAF {
        return calls.iter().map(|(_, r)| 1 + rule_len(r)).sum::<usize>() + 1;
    }
    let (lower, upper) = calls.split_at(calls.len() / 2);
    let lower_len = search_len(lower);
    let node = if lower_len <= 255 { 1 } else { 2 };
    node + lower_len + search_len(upper)
}

/// Emits a binary search over `calls` (sorted by number): a leaf compares a
/// few numbers in turn, each followed by its rule; numbers not listed fall
/// to `RET default`.
fn search(asm: &mut Asm, calls: &[(u32, &Rule)], default: Verdict) -> Result<(), BpfError> {
    if calls.len() <= LEAF {
        for (nr, rule) in calls {
            let miss = asm.label();
            asm.jump(JEQ_K, *nr, Target::Next, Target::Label(miss));
            emit_rule(asm, rule)?;
            asm.place(miss);
        }
        asm.ret(default);
        return Ok(());
    }
    let (lower, upper) = calls.split_at(calls.len() / 2);
    let to_upper = asm.label();
    if search_len(lower) <= 255 {
        asm.jump(JGE_K, upper[0].0, Target::Label(to_upper), Target::Next);
    } else {
        let to_lower = asm.label();
        asm.jump(JGE_K, upper[0].0, Target::Next, Target::Label(to_lower));
        asm.always(to_upper);
        asm.place(to_lower);
    }
    search(asm, lower, default)?;
    asm.place(to_upper);
    search(asm, upper, default)
}

/// Compiles `policy` to a classic BPF program for `seccomp(2)`.
pub fn compile(policy: &Policy) -> Result<Vec<Insn>, BpfError> {
    let mut asm = Asm::default();
    let native = asm.label();
    asm.stmt(LD_W_ABS, OFF_ARCH);
    asm.jump(JEQ_K, policy.arch, Target::Label(native), Target::Next);
    asm.ret(policy.foreign_arch);
    asm.place(native);
    asm.stmt(LD_W_ABS, OFF_NR);
    if let Some((bit, v)) = policy.high_range {
        let below = asm.label();
        asm.jump(JGE_K, bit, Target::Next, Target::Label(below));
        asm.ret(v);
        asm.place(below);
    }
    let calls: Vec<(u32, &Rule)> = policy.rules.iter().map(|(n, r)| (*n, r)).collect();
    search(&mut asm, &calls, policy.default)?;
    asm.finish()
}

/// A classic-BPF interpreter for the instructions seccomp filters use, for
/// tests: checks programs by running them rather than by reading them.
pub mod emulate {
    use crate::Insn;

    /// The `struct seccomp_data` a filter sees.
    #[derive(Debug, Clone, Copy)]
    pub struct Data {
        pub nr: u32,
        pub arch: u32,
        pub args: [u64; 6],
    }

    impl Data {
        fn word(&self, off: u32) -> u32 {
            match off {
                0 => self.nr,
                4 => self.arch,
                8 | 12 => 0, // instruction pointer
                o if (16..64).contains(&o) && o % 4 == 0 => {
                    let a = self.args[((o - 16) / 8) as usize];
                    if o % 8 == 0 {
                        (a & 0xffff_ffff) as u32
                    } else {
                        (a >> 32) as u32
                    }
                }
                o => panic!("load from offset {o}"),
            }
        }
    }

    /// Runs `prog` on `data`; returns the return value and the number of
    /// instructions executed. Panics on an instruction seccomp filters do not use, a load
    /// outside `struct seccomp_data` or a jump out of the program.
    #[allow(clippy::many_single_char_names)] // a, x, k: the BPF machine's own names
    pub fn run(prog: &[Insn], data: &Data) -> (u32, usize) {
        let (mut a, mut x, mut pc, mut steps) = (0u32, 0u32, 0usize, 0usize);
        loop {
            let i = &prog[pc];
            steps += 1;
            pc += 1;
            let k = i.k;
            let jump = |cond: bool| usize::from(if cond { i.jt } else { i.jf });
            match i.code {
                0x20 => a = data.word(k),       // ld w abs
                0x00 => a = k,                  // ld imm
                0x01 => x = k,                  // ldx imm
                0x54 => a &= k,                 // and k
                0x5c => a &= x,                 // and x
                0x04 => a = a.wrapping_add(k),  // add k
                0x05 => pc += k as usize,       // ja
                0x15 => pc += jump(a == k),     // jeq k
                0x25 => pc += jump(a > k),      // jgt k
                0x35 => pc += jump(a >= k),     // jge k
                0x45 => pc += jump(a & k != 0), // jset k
                0x1d => pc += jump(a == x),     // jeq x
                0x06 => return (k, steps),      // ret k
                c => panic!("opcode {c:#x} at {}", pc - 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::emulate::{Data, run};
    use super::*;

    const ARCH: u32 = 0xC000_003E;

    fn policy(nrs: &[u32]) -> Policy {
        Policy {
            arch: ARCH,
            foreign_arch: Verdict::KillProcess,
            high_range: Some((0x4000_0000, Verdict::Errno(38))),
            default: Verdict::Allow,
            rules: nrs
                .iter()
                .map(|n| (*n, Rule::Always(Verdict::Errno(1))))
                .collect(),
        }
    }

    fn data(nr: u32) -> Data {
        Data {
            nr,
            arch: ARCH,
            args: [0; 6],
        }
    }

    #[test]
    fn search_finds_every_listed_number_and_nothing_else() {
        for n in [0u32, 1, 2, 4, 5, 9, 17, 60, 200] {
            let nrs: Vec<u32> = (0..n).map(|i| i * 3 + 1).collect();
            let prog = compile(&policy(&nrs)).unwrap();
            // Large trees need the long-jump form; make sure it is exercised.
            assert_eq!(prog.iter().any(|i| i.code == JA), n == 200, "n={n}");
            for nr in 0..(n * 3 + 8) {
                let want = if nrs.contains(&nr) {
                    Verdict::Errno(1)
                } else {
                    Verdict::Allow
                };
                assert_eq!(run(&prog, &data(nr)).0, want.ret_value(), "n={n} nr={nr}");
            }
        }
    }

    #[test]
    fn architecture_and_high_range_come_first() {
        let prog = compile(&policy(&[1, 2, 3])).unwrap();
        let mut d = data(1);
        d.arch = 0x4000_0003; // i386
        assert_eq!(run(&prog, &d).0, Verdict::KillProcess.ret_value());
        assert_eq!(
            run(&prog, &data(0x4000_0001)).0,
            Verdict::Errno(38).ret_value()
        );
        assert_eq!(
            run(&prog, &data(u32::MAX)).0,
            Verdict::Errno(38).ret_value()
        );
    }

    #[test]
    fn argument_rules_look_at_the_low_half_only() {
        let mut p = policy(&[]);
        p.rules.insert(
            16,
            Rule::ArgIn {
                arg: 1,
                values: vec![0x5412, 0x541C],
                hit: Verdict::Errno(1),
                miss: Verdict::Allow,
            },
        );
        p.rules.insert(
            56,
            Rule::ArgAnyBit {
                arg: 0,
                mask: 0x1000_0000,
                hit: Verdict::Errno(1),
                miss: Verdict::Allow,
            },
        );
        let prog = compile(&p).unwrap();
        let with = |nr, a0, a1| {
            let mut d = data(nr);
            d.args[0] = a0;
            d.args[1] = a1;
            run(&prog, &d).0
        };
        let eperm = Verdict::Errno(1).ret_value();
        let allow = Verdict::Allow.ret_value();
        assert_eq!(with(16, 0, 0x5412), eperm);
        assert_eq!(with(16, 0, 0xdead_0000_0000_5412), eperm);
        assert_eq!(with(16, 0, 0x541C), eperm);
        assert_eq!(with(16, 0, 0x5413), allow);
        assert_eq!(with(56, 0x1000_0011, 0), eperm);
        assert_eq!(with(56, 0x0000_0011, 0), allow);
        assert_eq!(with(56, 0xffff_ffff_0000_0000, 0), allow);
    }

    #[test]
    fn unlisted_calls_get_the_default_and_argument_rules_their_miss() {
        let mut p = policy(&[5]);
        p.default = Verdict::Errno(1);
        p.rules.insert(7, Rule::Always(Verdict::Allow));
        p.rules.insert(
            9,
            Rule::ArgAnyBit {
                arg: 2,
                mask: 0x4,
                hit: Verdict::Errno(1),
                miss: Verdict::Allow,
            },
        );
        p.rules.insert(
            157,
            Rule::ArgIn {
                arg: 0,
                values: vec![15],
                hit: Verdict::Allow,
                miss: Verdict::Errno(13),
            },
        );
        let prog = compile(&p).unwrap();
        let with = |nr, a0, a2| {
            let mut d = data(nr);
            d.args[0] = a0;
            d.args[2] = a2;
            run(&prog, &d).0
        };
        let allow = Verdict::Allow.ret_value();
        assert_eq!(with(7, 0, 0), allow);
        for unlisted in [0, 6, 8, 10, 156, 158, 400] {
            assert_eq!(
                with(unlisted, 0, 0),
                Verdict::Errno(1).ret_value(),
                "{unlisted}"
            );
        }
        assert_eq!(with(9, 0, 0x3), allow);
        assert_eq!(with(9, 0, 0x7), Verdict::Errno(1).ret_value());
        assert_eq!(with(157, 15, 0), allow);
        assert_eq!(with(157, 0xffff_ffff_0000_000f, 0), allow);
        assert_eq!(with(157, 4, 0), Verdict::Errno(13).ret_value());
    }

    #[test]
    fn every_path_is_short() {
        let nrs: Vec<u32> = (0..120).map(|i| i * 4).collect();
        let prog = compile(&policy(&nrs)).unwrap();
        let worst = (0..600).map(|nr| run(&prog, &data(nr)).1).max().unwrap();
        // arch (2) + nr + range (2) + log2(120/4) levels + one leaf.
        assert!(worst <= 14, "worst path {worst} instructions");
    }

    #[test]
    fn bad_argument_index_is_an_error() {
        let mut p = policy(&[]);
        p.rules.insert(
            1,
            Rule::ArgAnyBit {
                arg: 6,
                mask: 1,
                hit: Verdict::Errno(1),
                miss: Verdict::Allow,
            },
        );
        assert_eq!(compile(&p), Err(BpfError::BadArg(6)));
    }
}
