//! The reference bank: a small real CA and EST (RFC 7030) server for testers
//! and the project's own tests. It enforces the bank's rules on its side too.
