//! `doctor`'s word on the circuit breaker: a cut-off that could not be made is a
//! problem until one is made again (the daemon survives it, and tries again with
//! the next incident).

use super::{CONFIG_FILE, Check, Facts, RECENT_ALERTS, Recorded};
use crate::model::CutOutcome;

/// A check only where the breaker acted lately: its last attempt failed (a
/// PROBLEM, with the fix), or it cut off a PC (OK, with which).
pub(super) fn breaker_check(facts: &Facts, rec: &Recorded) -> Option<Check> {
    let name = "breaker";
    let last = rec
        .cut_offs
        .iter()
        .filter(|(_, c)| facts.now - c.at <= RECENT_ALERTS)
        .filter(|(_, c)| matches!(c.outcome, CutOutcome::Cut | CutOutcome::Failed { .. }))
        .max_by_key(|(_, c)| c.at)?;
    let (code, cut_off) = last;
    let when = crate::words::spoken_in_a_sentence(cut_off.at, facts.now);
    match &cut_off.outcome {
        CutOutcome::Failed { why } => Some(Check::problem(
            name,
            format!(
                "The circuit breaker could not cut off {} {when} (incident {code}): {why}.",
                cut_off.pc()
            ),
            format!(
                "Check the command of the [breaker] settings in {CONFIG_FILE}, or without \
                 one that smbcontrol is installed (package samba-common-bin) and reaches \
                 smbd; then reload the service:"
            ),
            vec!["sudo systemctl reload undelete".into()],
        )),
        _ => Some(Check::ok(
            name,
            format!(
                "The circuit breaker cut off {} {when} (incident {code}).",
                cut_off.pc()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::tests::{healthy, recorded};
    use crate::model::CutOff;

    fn cut_off(at: i64, outcome: CutOutcome) -> (String, CutOff) {
        let cut_off = CutOff {
            at,
            address: "192.168.1.23".into(),
            user: Some("anna".into()),
            machine: Some("FRONTDESK".into()),
            outcome,
        };
        ("K7Q-4MDX".into(), cut_off)
    }

    #[test]
    fn a_cut_off_that_failed_is_a_problem_until_one_works_again() {
        let mut facts = healthy();
        assert!(breaker_check(&facts, facts.recorded.as_ref().unwrap()).is_none());
        let at = facts.now - 60 * 1_000_000_000;
        let failed = CutOutcome::Failed {
            why: "smbcontrol could not be started (No such file or directory)".into(),
        };
        recorded(&mut facts).cut_offs = vec![cut_off(at, failed)];
        let check = breaker_check(&facts, facts.recorded.as_ref().unwrap()).unwrap();
        assert!(!check.ok, "{check:?}");
        assert!(
            check.message.contains("could not cut off FRONTDESK"),
            "{check:?}"
        );
        assert!(
            check.message.contains(": smbcontrol could not"),
            "{check:?}"
        );
        recorded(&mut facts)
            .cut_offs
            .push(cut_off(at + 1, CutOutcome::Cut));
        let check = breaker_check(&facts, facts.recorded.as_ref().unwrap()).unwrap();
        assert!(check.ok, "{check:?}");
        assert!(check.message.contains("cut off FRONTDESK"), "{check:?}");
    }
}
