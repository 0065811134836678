//! The installer for a platform that has none yet: both actions refuse
//! with [`PolicyError::NotAvailable`], so that `browser-policy --install`
//! never looks done where nothing was written. The policies can still be
//! printed (`certagent browser-policy`) and deployed by hand or by the
//! platform's management tools.

use super::{InstallReport, Installer, RemoveReport};
use crate::browser_policy::{Origins, PolicyError};

/// Refuses to install or remove: no installer on this platform.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unavailable;

impl Installer for Unavailable {
    fn install(&self, _origins: &Origins) -> Result<InstallReport, PolicyError> {
        Err(PolicyError::NotAvailable {
            action: "install",
            os: std::env::consts::OS,
        })
    }

    fn remove(&self) -> Result<RemoveReport, PolicyError> {
        Err(PolicyError::NotAvailable {
            action: "remove",
            os: std::env::consts::OS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser_policy::test_origins as origins;

    #[test]
    fn unavailable_refuses_both_actions() {
        let e = Unavailable
            .install(&origins(&["https://ib.bank.example"]))
            .expect_err("install refused")
            .to_string();
        assert!(
            e.starts_with("browser-policy --install is not available on this platform"),
            "{e}"
        );
        let e = Unavailable
            .remove()
            .expect_err("remove refused")
            .to_string();
        assert!(
            e.starts_with("browser-policy --remove is not available on this platform"),
            "{e}"
        );
    }
}
