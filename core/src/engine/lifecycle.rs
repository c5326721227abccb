//! The environment state machine of the CLI contract.
//!
//! States: Defined, Built, Running, Frozen, Archived. `Running` is never stored: it is derived
//! from live sessions, so a crashed session cannot leave an environment stuck.

use karapace_store::EnvState;

use crate::error::CoreError;

/// An operation whose permission depends on the environment's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Enter,
    Exec,
    Commit,
    Restore,
    Destroy,
    Stop,
    Freeze,
    Archive,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::Enter => "enter",
            Op::Exec => "exec",
            Op::Commit => "commit",
            Op::Restore => "restore",
            Op::Destroy => "destroy",
            Op::Stop => "stop",
            Op::Freeze => "freeze",
            Op::Archive => "archive",
        }
    }
}

/// Checks that `op` is allowed on an environment whose effective state is `state`.
pub fn check(op: Op, state: EnvState, who: &str) -> Result<(), CoreError> {
    use EnvState::{Archived, Built, Frozen, Running};
    let allowed = match op {
        // Several sessions of one environment may run at once.
        Op::Enter | Op::Exec => matches!(state, Built | Running),
        Op::Commit | Op::Restore => matches!(state, Built | Frozen),
        Op::Destroy => state != Running,
        Op::Stop => state == Running,
        Op::Freeze => matches!(state, Built | Running),
        Op::Archive => matches!(state, Built | Frozen),
    };
    if allowed {
        return Ok(());
    }
    let message = match (op, state) {
        (Op::Stop, _) => format!("environment '{who}' is not running"),
        (Op::Destroy, Running) => {
            format!("environment '{who}' is running; stop it first (karapace stop {who})")
        }
        (Op::Enter | Op::Exec, Archived) => {
            format!("environment '{who}' is archived and cannot be entered")
        }
        (Op::Enter | Op::Exec, Frozen) => {
            format!("environment '{who}' is frozen and cannot be entered")
        }
        (op, state) => format!("cannot {} environment '{who}': it is {state}", op.verb()),
    };
    Err(CoreError::State(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use EnvState::{Archived, Built, Defined, Frozen, Running};

    #[test]
    fn table() {
        let all = [Defined, Built, Running, Frozen, Archived];
        let expect = |op, ok: &[EnvState]| {
            for s in all {
                assert_eq!(
                    check(op, s, "x").is_ok(),
                    ok.contains(&s),
                    "{op:?} in {s:?}"
                );
            }
        };
        expect(Op::Enter, &[Built, Running]);
        expect(Op::Exec, &[Built, Running]);
        expect(Op::Commit, &[Built, Frozen]);
        expect(Op::Restore, &[Built, Frozen]);
        expect(Op::Destroy, &[Defined, Built, Frozen, Archived]);
        expect(Op::Stop, &[Running]);
        expect(Op::Freeze, &[Built, Running]);
        expect(Op::Archive, &[Built, Frozen]);
    }

    #[test]
    fn messages() {
        assert_eq!(
            check(Op::Stop, Built, "dev").unwrap_err().to_string(),
            "environment 'dev' is not running"
        );
        assert!(
            check(Op::Destroy, Running, "dev")
                .unwrap_err()
                .to_string()
                .contains("running")
        );
    }
}
