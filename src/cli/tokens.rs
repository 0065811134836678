//! `certagent tokens`: slots and tokens of the configured module.

use serde::Serialize;

use super::{App, pin_state};
use crate::Error;
use crate::i18n::Arg;
use crate::text::{NAME_MAX, clean, quoted};
use crate::token::{LibraryInfo, SlotReport};

#[derive(Serialize)]
struct Report<'a> {
    module: &'a LibraryInfo,
    slots: Vec<SlotJson>,
}

#[derive(Serialize)]
struct SlotJson {
    #[serde(flatten)]
    slot: SlotReport,
    uri: Option<String>,
}

pub(super) fn run(app: &App) -> Result<(), Error> {
    let module = app.module()?;
    let slots = module.slots()?;
    let info = module.info();
    if app.json {
        let slots = slots
            .into_iter()
            .map(|slot| SlotJson {
                uri: slot.token.as_ref().map(|t| t.uri()),
                slot,
            })
            .collect();
        return app.print_json(&Report {
            module: info,
            slots,
        });
    }
    let profile = match info.profile.as_deref() {
        Some(p) => app.tr("cli-profile", &[("name", Arg::Str(p))]),
        None => app.tr("cli-no-profile", &[]),
    };
    let version = info.cryptoki_version.to_string();
    println!(
        "{}",
        app.tr(
            "cli-module",
            &[
                ("path", Arg::Str(&info.path)),
                ("profile", Arg::Str(&profile)),
                ("maker", Arg::Str(&clean(&info.manufacturer, NAME_MAX))),
                ("description", Arg::Str(&clean(&info.description, NAME_MAX))),
                ("version", Arg::Str(&version)),
            ],
        )
    );
    if slots.is_empty() {
        println!("{}", app.tr("cli-no-slots", &[]));
    }
    for s in &slots {
        // Names from the token are cleaned and quoted: they are its, not ours.
        let slot = quoted(&s.slot_description);
        let slot = Arg::Str(&slot);
        match &s.token {
            None => println!("- {}", app.tr("cli-slot-empty", &[("slot", slot)])),
            Some(t) if !t.initialized => {
                println!("- {}", app.tr("cli-slot-uninitialised", &[("slot", slot)]))
            }
            Some(t) => {
                let label = quoted(&t.label);
                println!(
                    "- {}",
                    app.tr(
                        "cli-slot-token",
                        &[("slot", slot), ("label", Arg::Str(&label))]
                    )
                );
                println!(
                    "    {}",
                    app.tr(
                        "cli-serial-maker",
                        &[
                            ("serial", Arg::Str(&clean(&t.serial, NAME_MAX))),
                            ("maker", Arg::Str(&clean(&t.manufacturer, NAME_MAX))),
                            ("model", Arg::Str(&clean(&t.model, NAME_MAX))),
                        ],
                    )
                );
                let state = pin_state(app.lang, t);
                println!(
                    "    {}{}{}",
                    app.tr("cli-pin", &[("state", Arg::Str(&state))]),
                    if t.protected_auth_path {
                        app.tr("cli-pin-pad", &[])
                    } else {
                        String::new()
                    },
                    if t.pin_to_be_changed {
                        app.tr("cli-pin-change", &[])
                    } else {
                        String::new()
                    },
                );
                println!("    {}", t.uri());
            }
        }
    }
    Ok(())
}
