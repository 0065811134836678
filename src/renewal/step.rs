//! The renewal's steps, and the table that says, for each, what it does
//! and where a run resumes when a crash, a kill or a pulled token left the
//! journal there (as certmonger maps each in-flight state to where a
//! restart resumes). The table is the one place this is written: the
//! workflow's dispatch ([`super::workflow`]) has one handler per row, and
//! ARCHITECTURE.md shows the same rows (a test keeps them equal).

use serde::{Deserialize, Serialize};

use crate::holdings::TokenCert;

/// Where a renewal is. Serialised in the journal and reported to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Started,
    GeneratingKey,
    KeyReady,
    CsrReady,
    Issued,
    Installing,
    Installed,
    RetiringOld,
    Done,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Started => "started",
            Step::GeneratingKey => "generating-key",
            Step::KeyReady => "key-ready",
            Step::CsrReady => "csr-ready",
            Step::Issued => "issued",
            Step::Installing => "installing",
            Step::Installed => "installed",
            Step::RetiringOld => "retiring-old",
            Step::Done => "done",
        }
    }
}

/// What a step's handler says comes next. Every step is journalled before
/// it acts, so the journal alone says where the next run resumes.
pub enum Next {
    /// Journal this step, then act on it.
    Go(Step),
    /// The card must be closed and read again before the attempt can go
    /// on (its module shows what was written only then); the journal
    /// holds where it resumes ([`super::run`] does the reading).
    ReadCardAgain,
    /// The new certificate is on the token, read back and test-signed.
    Done(Box<TokenCert>),
}

/// What the workflow tells its caller as it goes.
pub trait Progress: Sync {
    fn step(&self, step: Step, message: &str);
}

impl<F: Fn(Step, &str) + Sync> Progress for F {
    fn step(&self, step: Step, message: &str) {
        self(step, message)
    }
}

/// One row of the table.
pub struct Row {
    pub step: Step,
    /// What a run does at this step.
    pub does: &'static str,
    /// What the next run does when the journal was left at this step.
    pub on_resume: &'static str,
}

/// Every step in order, what it does and its resume rule.
pub const TABLE: [Row; 9] = [
    Row {
        step: Step::Started,
        does: "the journal is written; nothing on the token yet",
        on_resume: "goes on to generating-key",
    },
    Row {
        step: Step::GeneratingKey,
        does: "generates the candidate key pair on the token (a card: in the chosen slot, then reads the card again)",
        on_resume: "adopts the key pair carrying the attempt's label (a card: the new key in the slot), else generates",
    },
    Row {
        step: Step::KeyReady,
        does: "builds the CSR and signs it on the token with the candidate key",
        on_resume: "builds the CSR again with the journalled candidate key",
    },
    Row {
        step: Step::CsrReady,
        does: "sends the CSR over mutual TLS (the current certificate) and verifies the answer",
        on_resume: "sends the journalled CSR again, byte for byte (same key)",
    },
    Row {
        step: Step::Issued,
        does: "the verified certificate is journalled",
        on_resume: "goes on to installing",
    },
    Row {
        step: Step::Installing,
        does: "verifies the certificate again and writes it beside the candidate key",
        on_resume: "checks the key is the candidate; writes the certificate unless it is already there",
    },
    Row {
        step: Step::Installed,
        does: "reads the certificate back and test-signs with the new key (a card: then reads the card again)",
        on_resume: "reads back (writes again if it is missing) and test-signs",
    },
    Row {
        step: Step::RetiringOld,
        does: "removes the old certificate and key, only what is proven to be the journal's",
        on_resume: "removes what is still proven to be the journal's old pair; a card: on a fresh read, once",
    },
    Row {
        step: Step::Done,
        does: "the journal is removed; the new certificate is reported",
        on_resume: "reports the journalled certificate",
    },
];

/// What this process saw itself during the run, so a step need not look
/// on the token again for it. A crash loses it by design: the next run
/// starts with none of it and every step looks (the table's resume rule).
/// Nothing here decides anything the journal does not.
#[derive(Default)]
pub struct Seen {
    /// The attempt was started by this run: nothing of it can be on the
    /// token from before.
    pub started: bool,
    /// This run generated the candidate key (its handles are known).
    pub generated: bool,
    /// This run wrote the new certificate (read back through its handle).
    pub written: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_every_step_once_in_order() {
        let steps = [
            Step::Started,
            Step::GeneratingKey,
            Step::KeyReady,
            Step::CsrReady,
            Step::Issued,
            Step::Installing,
            Step::Installed,
            Step::RetiringOld,
            Step::Done,
        ];
        assert_eq!(TABLE.len(), steps.len());
        for (row, step) in TABLE.iter().zip(steps) {
            assert_eq!(row.step, step);
        }
    }

    #[test]
    fn architecture_md_shows_the_table_as_it_is() {
        let doc = include_str!("../../ARCHITECTURE.md");
        for r in &TABLE {
            let line = format!("| `{}` | {} | {} |", r.step.as_str(), r.does, r.on_resume);
            assert!(
                doc.contains(&line),
                "ARCHITECTURE.md lacks the row:\n{line}"
            );
        }
    }
}
