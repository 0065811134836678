//! The agent's event lines on stdout (`certagent: ready`, `token
//! inserted`, ...), for whoever watches it: the journal, a test.

/// A line on stdout for whoever watches the agent (a log, a test); a closed
/// stdout must not take the agent down, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        // One line in the journal, whatever names it carries.
        let line = crate::text::clean(&format!($($arg)*), crate::text::MESSAGE_MAX);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }};
}
pub(crate) use say;
