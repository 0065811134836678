//! No desktop on this platform yet: no tray, no notices, no browser to
//! open; each says so (the agent logs it and goes on serving pages).

use std::sync::mpsc::Sender;

use super::{Action, Desktop, TrayError, View};

pub struct NoDesktop;

impl NoDesktop {
    pub fn new(_actions: Sender<Action>) -> NoDesktop {
        NoDesktop
    }
}

const NONE: &str = "certagent has no desktop integration on this platform yet";

impl Desktop for NoDesktop {
    fn start_tray(&mut self, _first: View) -> Result<(), TrayError> {
        Err(TrayError(NONE.into()))
    }

    fn show(&self, _view: View) {}

    fn notify(&self, _summary: &str, _body: &str, _renew: bool) -> Result<(), String> {
        Err(NONE.into())
    }

    fn open_page(&self, _url: &str) -> Result<(), String> {
        Err(NONE.into())
    }
}
