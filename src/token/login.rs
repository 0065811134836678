//! Logging in and out: the user PIN (or the reader's PIN pad), a card's
//! admin PIN; a refusal is reported, never retried.

use super::*;

impl Token {
    /// Log the user in. `pin` is `None` on a protected authentication path
    /// (PIN pad). A rejected PIN is reported with the token's fresh PIN
    /// state and never retried.
    ///
    /// "Already logged in" is an error, never a success: a PIN that reaches
    /// this call must be checked by the token. Callers that own the token
    /// call [`Token::logout`] first.
    pub fn login(&self, pin: Option<&AuthPin>) -> Result<()> {
        if self.siblings.is_empty() {
            return self.login_here(pin);
        }
        // A card of several tokens: log in where its certificates' keys
        // are (one C_Login where they share a token), stopping at the
        // first refusal; the token itself when it holds none.
        let mut ids: Vec<Vec<u8>> = self.certificates()?.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        let mut done: Vec<Slot> = Vec::new();
        for id in &ids {
            let m = self.member_for(id);
            if !done.contains(&m.slot) {
                m.login_here(pin)?;
                done.push(m.slot);
            }
        }
        if done.is_empty() {
            self.login_here(pin)?;
        }
        Ok(())
    }

    /// Log the user in on the token that holds key slot `id`, unless it is
    /// logged in already (a card's other token, during a renewal).
    pub fn login_for(&self, id: &[u8], pin: Option<&AuthPin>) -> Result<()> {
        let m = self.member_for(id);
        if m.is_logged_in_here() {
            return Ok(());
        }
        m.login_here(pin)
    }

    /// Log in as the security officer: the card's admin PIN, for key
    /// generation and certificate writes where the family needs it. Every
    /// token of the card is logged out first; a rejected PIN is never
    /// retried.
    pub fn login_admin(&self, pin: Option<&AuthPin>) -> Result<()> {
        self.logout()?;
        match self.session().login(UserType::So, pin) {
            Ok(()) => Ok(()),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(TokenError::AdminPinIncorrect),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(TokenError::AdminPinIncorrect),
            Err(e) => Err(error::map(e)),
        }
    }

    pub(super) fn login_here(&self, pin: Option<&AuthPin>) -> Result<()> {
        let result = self.session().login(UserType::User, pin);
        match result {
            Ok(()) => Ok(()),
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                Err(TokenError::AlreadyLoggedIn)
            }
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                let after = self.refresh_info().ok();
                Err(TokenError::PinIncorrect {
                    count_low: after.as_ref().is_some_and(|i| i.pin_count_low),
                    final_try: after.as_ref().is_some_and(|i| i.pin_final_try),
                    locked: after.as_ref().is_some_and(|i| i.pin_locked),
                })
            }
            Err(e) => Err(error::map(e)),
        }
    }

    /// Log out (the login state is the application's, shared by all its
    /// sessions on this token). Not being logged in is not an error.
    pub fn logout(&self) -> Result<()> {
        let mut first = Ok(());
        for m in self.members() {
            // Private objects' handles need not outlive the login (SoftHSM
            // gives them new ones at the next): find them again then.
            let private = class_key(ObjectClass::PRIVATE_KEY);
            lock(&m.handles).retain(|(class, _), _| *class != private);
            let r = match m.session().logout() {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Ok(()),
                Err(e) => Err(error::map(e)),
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Whether the session (or, on a card of several tokens, any of its
    /// tokens) is logged in as the user.
    pub fn is_logged_in(&self) -> bool {
        self.members().any(Token::is_logged_in_here)
    }

    pub(super) fn is_logged_in_here(&self) -> bool {
        use cryptoki::session::SessionState;
        self.session()
            .get_session_info()
            .map(|s| {
                matches!(
                    s.session_state(),
                    SessionState::RwUser | SessionState::RoUser
                )
            })
            .unwrap_or(false)
    }
}
