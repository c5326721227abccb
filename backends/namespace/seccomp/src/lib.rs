//! The namespace backend's seccomp filters, compiled at build time.
//!
//! `karapace-backend-namespace`'s build script calls [`Programs::for_arch`] with the target's
//! architecture and writes [`Programs::rust_source`] into `OUT_DIR`; the helper embeds the
//! finished programs and only installs them. The policy is the data of [`policy`] (the same
//! file the runtime includes for the OCI backend's `linux.seccomp`); [`bpf`] compiles it.
//! Nothing of this crate runs in the helper.
//!
//! ```
//! let programs = karapace_seccomp::Programs::for_arch("x86_64").unwrap();
//! let source = programs.rust_source();
//! assert!(source.contains("pub static WORKLOAD"));
//! ```
//!
//! It must never read anything of the build host's kernel or headers: system-call numbers
//! come from the table of the *target* architecture ([`syscalls`]).

pub mod bpf;
pub mod policy;
pub mod syscalls;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bpf::{BpfError, Policy, Rule, Verdict};

/// One classic-BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("no seccomp policy for target architecture {0} (only x86_64)")]
    UnsupportedArch(String),
    #[error("system call {0} is not in the {1} table")]
    UnknownSyscall(String, &'static str),
    #[error(transparent)]
    Bpf(#[from] BpfError),
}

/// An architecture's `AUDIT_ARCH_*` value, its system-call table and the bit above which its
/// numbers belong to another ABI (x32 on `x86_64`).
pub struct Arch {
    pub name: &'static str,
    pub audit_arch: u32,
    pub table: &'static [(&'static str, u32)],
    pub foreign_abi_bit: Option<u32>,
}

impl Arch {
    pub fn of(target_arch: &str) -> Result<Arch, Error> {
        match target_arch {
            "x86_64" => Ok(Arch {
                name: "x86_64",
                audit_arch: 0xC000_003E,
                table: syscalls::X86_64,
                foreign_abi_bit: Some(0x4000_0000),
            }),
            other => Err(Error::UnsupportedArch(other.to_owned())),
        }
    }

    /// The number of system call `name`.
    pub fn nr(&self, name: &str) -> Result<u32, Error> {
        self.table
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, nr)| *nr)
            .ok_or_else(|| Error::UnknownSyscall(name.to_owned(), self.name))
    }

    fn policy(&self, default: Verdict, rules: BTreeMap<u32, Rule>) -> Policy {
        Policy {
            arch: self.audit_arch,
            foreign_arch: Verdict::KillProcess,
            high_range: self
                .foreign_abi_bit
                .map(|b| (b, Verdict::Errno(policy::ENOSYS))),
            default,
            rules,
        }
    }

    fn always(
        &self,
        rules: &mut BTreeMap<u32, Rule>,
        names: &[&str],
        v: Verdict,
    ) -> Result<(), Error> {
        for name in names {
            rules.insert(self.nr(name)?, Rule::Always(v));
        }
        Ok(())
    }

    /// The workload's policy: ENOSYS for [`policy::UNSUPPORTED`] and the other ABI's range;
    /// EPERM for [`policy::DENIED`], for `ioctl` [`policy::DENIED_IOCTLS`] and for `clone` with
    /// any of [`policy::CLONE_NS_FLAGS`]; everything else allowed; foreign architectures killed.
    pub fn workload(&self) -> Result<Policy, Error> {
        let mut rules = BTreeMap::new();
        self.always(&mut rules, policy::DENIED, EPERM)?;
        self.always(&mut rules, policy::UNSUPPORTED, ENOSYS)?;
        rules.insert(
            self.nr("ioctl")?,
            Rule::ArgIn {
                arg: 1,
                values: policy::DENIED_IOCTLS.iter().map(|(_, v)| *v).collect(),
                hit: EPERM,
                miss: Verdict::Allow,
            },
        );
        rules.insert(
            self.nr("clone")?,
            Rule::ArgAnyBit {
                arg: 0,
                mask: policy::CLONE_NS_FLAGS.iter().fold(0, |m, (_, f)| m | f),
                hit: EPERM,
                miss: Verdict::Allow,
            },
        );
        Ok(self.policy(Verdict::Allow, rules))
    }

    /// The control and init processes' allowlist: [`policy::CONTROL_ALLOWED`] (with the
    /// arguments of [`policy::CONTROL_ARGUMENTS`] only, and no executable memory); EPERM for
    /// everything else, ENOSYS for the other ABI's range; foreign architectures killed.
    pub fn control(&self) -> Result<Policy, Error> {
        let mut rules = BTreeMap::new();
        self.always(&mut rules, policy::CONTROL_ALLOWED, Verdict::Allow)?;
        for name in policy::CONTROL_NO_EXEC_MEMORY {
            rules.insert(
                self.nr(name)?,
                Rule::ArgAnyBit {
                    arg: 2,
                    mask: policy::PROT_EXEC,
                    hit: EPERM,
                    miss: Verdict::Allow,
                },
            );
        }
        for rule in policy::CONTROL_ARGUMENTS {
            rules.insert(
                self.nr(rule.call)?,
                Rule::ArgIn {
                    arg: rule.arg,
                    values: rule.allowed.iter().map(|(_, v)| *v).collect(),
                    hit: Verdict::Allow,
                    miss: EPERM,
                },
            );
        }
        Ok(self.policy(EPERM, rules))
    }

    /// The filter stacked on the workload's for a collapsed id map: [`policy::IGNORED_CHOWN`]
    /// succeed without effect; everything else allowed (the workload's filter still applies).
    pub fn ignore_chown(&self) -> Result<Policy, Error> {
        let mut rules = BTreeMap::new();
        self.always(&mut rules, policy::IGNORED_CHOWN, Verdict::Errno(0))?;
        Ok(Policy {
            high_range: None,
            ..self.policy(Verdict::Allow, rules)
        })
    }

    /// The filter stacked on a privileged-mode build step's: [`policy::CLAIMED_ROOT_IDS`]
    /// answer 0 (root's id, or success); everything else allowed.
    pub fn claim_root(&self) -> Result<Policy, Error> {
        let mut rules = BTreeMap::new();
        self.always(&mut rules, policy::CLAIMED_ROOT_IDS, Verdict::Errno(0))?;
        Ok(Policy {
            high_range: None,
            ..self.policy(Verdict::Allow, rules)
        })
    }
}

const EPERM: Verdict = Verdict::Errno(policy::EPERM);
const ENOSYS: Verdict = Verdict::Errno(policy::ENOSYS);

/// The finished programs of one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programs {
    pub workload: Vec<Insn>,
    pub control: Vec<Insn>,
    pub ignore_chown: Vec<Insn>,
    pub claim_root: Vec<Insn>,
}

impl Programs {
    /// Compiles every policy for `target_arch` (Cargo's `CARGO_CFG_TARGET_ARCH` spelling).
    pub fn for_arch(target_arch: &str) -> Result<Programs, Error> {
        let arch = Arch::of(target_arch)?;
        Ok(Programs {
            workload: bpf::compile(&arch.workload()?)?,
            control: bpf::compile(&arch.control()?)?,
            ignore_chown: bpf::compile(&arch.ignore_chown()?)?,
            claim_root: bpf::compile(&arch.claim_root()?)?,
        })
    }

    /// The programs as Rust source: one `static` slice of `seccompiler::sock_filter` each
    /// (`WORKLOAD`, `CONTROL`, `IGNORE_CHOWN`, `CLAIM_ROOT`), ready for `seccompiler::apply_filter`.
    pub fn rust_source(&self) -> String {
        let mut out = String::from("// @generated by karapace-seccomp: do not edit.\n");
        for (name, prog) in [
            ("WORKLOAD", &self.workload),
            ("CONTROL", &self.control),
            ("IGNORE_CHOWN", &self.ignore_chown),
            ("CLAIM_ROOT", &self.claim_root),
        ] {
            let _ = writeln!(out, "pub static {name}: &[seccompiler::sock_filter] = &[");
            for i in prog {
                let _ = writeln!(
                    out,
                    "    seccompiler::sock_filter {{ code: {:#06x}, jt: {}, jf: {}, k: {:#010x} }},",
                    i.code, i.jt, i.jf, i.k
                );
            }
            out.push_str("];\n");
        }
        out
    }
}

#[cfg(test)]
mod tests;
