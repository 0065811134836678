use std::process::ExitCode;

use clap::FromArgMatches;

fn main() -> ExitCode {
    // SAFETY: first thing, while this is the only thread.
    unsafe { certagent::prompt::take_env_secrets() };
    // Started by a browser as its native messaging host: the browser's
    // arguments, not a command line (see certagent::native_messaging).
    // (args_os: an argument that is not UTF-8 must reach clap's own error,
    // never a panic here.)
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if certagent::native_messaging::invoked_as_host(&args) {
        return match certagent::cli::native_host() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("certagent native-host: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Help texts in the user's language.
    let lang = certagent::i18n::Lang::current();
    let cli = match certagent::cli::command(lang)
        .try_get_matches()
        .and_then(|m| certagent::cli::Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            // clap's own words are English: other languages say first, in
            // theirs, that the command line is wrong and where help is.
            let shown = matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if !shown && lang != certagent::i18n::Lang::En {
                eprintln!(
                    "certagent: {}",
                    certagent::i18n::tr_in(lang, "error-arguments", &[])
                );
            }
            e.exit()
        }
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        // cryptoki logs every vendor mechanism it has no name for as an
        // error; that is noise for users, so only show it at -vv.
        .filter_module(
            "cryptoki",
            if cli.verbose >= 2 {
                log::LevelFilter::Debug
            } else {
                log::LevelFilter::Off
            },
        )
        .init();
    let json = cli.json;
    match certagent::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the reason, whatever its nesting.
            let line = certagent::text::clean(&e.to_string(), certagent::text::MESSAGE_MAX);
            if json && matches!(e, certagent::Error::ChecksFailed(_)) {
                // The report, on stdout already, says which checks failed.
            } else if json {
                // Scripts read stdout: the error is data there too.
                println!(
                    "{}",
                    serde_json::json!({"error": e.code(), "message": line})
                );
            } else {
                eprintln!(
                    "certagent: {}",
                    e.for_people(certagent::i18n::Lang::current())
                );
            }
            ExitCode::FAILURE
        }
    }
}
