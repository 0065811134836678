//! `certagent tokens`: slots and tokens of the configured module.

use serde::Serialize;

use super::{App, pin_state};
use crate::Error;
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
    println!(
        "module {} ({}{} {}, PKCS#11 {})",
        info.path,
        info.profile
            .as_deref()
            .map(|p| format!("profile {p}; "))
            .unwrap_or_else(|| "no matching profile; ".into()),
        info.manufacturer,
        info.description,
        info.cryptoki_version
    );
    if slots.is_empty() {
        println!("no slots");
    }
    for s in &slots {
        match &s.token {
            None => println!("- slot {:?}: no token", s.slot_description),
            Some(t) if !t.initialized => {
                println!("- slot {:?}: token not initialised", s.slot_description)
            }
            Some(t) => {
                println!("- slot {:?}: token {:?}", s.slot_description, t.label);
                println!("    serial {}, {} {}", t.serial, t.manufacturer, t.model);
                println!(
                    "    PIN {}{}{}",
                    pin_state(t),
                    if t.protected_auth_path {
                        ", PIN pad (protected authentication path)"
                    } else {
                        ""
                    },
                    if t.pin_to_be_changed {
                        ", must be changed"
                    } else {
                        ""
                    },
                );
                println!("    {}", t.uri());
            }
        }
    }
    Ok(())
}
