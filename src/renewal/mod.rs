//! The renewal (and enrolment) workflow, journalled step by step, and the
//! one entry point every door uses: the CLI's `renew` and `enroll`, the
//! page's `/v1/renewals` and the tray all call [`plan_renewal`] (or
//! [`plan_enrollment`]) and then [`run`], so an interrupted attempt is
//! resumed from wherever the user comes back, never overwritten.
//!
//! A new key is a *candidate* until its certificate is on the token and
//! proven: the old certificate and key are removed only after the new
//! certificate has been written, read back and test-signed. Every step is
//! written to the journal *before* it acts, so a crash, a kill, a pulled
//! token or a lost network at any point resumes on the next run. What each
//! step does and where a run resumes from it is one table, [`step::TABLE`].
//!
//! Resume trusts nothing it does not check: the issued certificate is
//! verified again (key, subject, chain, dates) before it is written; the old
//! id is deleted only while it still holds the journal's old certificate and
//! key; a candidate is removed only if its public key is the journal's.
//! A request the bank refuses, or an answer that fails verification, ends
//! the attempt: the candidate key is removed and the token is as before.
//!
//! The files: [`plan`] (the pre-check), [`step`] (the table), [`workflow`]
//! (a handler per step) and [`card`] (the steps of a card with fixed key
//! slots), [`run`] (the one loop every door runs, reading a card again),
//! [`journal`], [`retired`] (keys left on a card), [`verify`] (the bank's answer).

mod attempt;
mod card;
mod error;
mod journal;
mod plan;
pub mod retired;
mod run;
pub mod step;
mod verify;
mod workflow;

pub use attempt::{Attempt, changed_stamp, known_issuers};
pub use error::RenewalError;
pub use journal::{Entry, Journal, Kind};
pub use plan::{
    DEFAULT_LABEL, Plan, Request, check_state_dir, check_token, choose_slot, plan_enrollment,
    plan_renewal,
};
pub use run::{Ended, Reopen, run};
pub use step::{Progress, Step};
pub use verify::verify_issued;
pub use workflow::{CardLogin, MAX_PENDING_WAIT};
