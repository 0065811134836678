//! Generates the forwarding table from cryptoki-sys's own `CK_FUNCTION_LIST`
//! (the Rust rendering of the PKCS#11 header): every field name, in order.
//! The types of the trampolines come from cryptoki-sys at compile time, so
//! nothing here repeats a signature, and a new header version is picked up
//! by updating cryptoki-sys.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(std::env::var("TARGET").unwrap_or_default())
        .current_dir(&manifest)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let sys = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "cryptoki-sys")
        .expect("cryptoki-sys among the packages");
    let dir = PathBuf::from(sys["manifest_path"].as_str().expect("manifest path"))
        .parent()
        .expect("package dir")
        .join("src")
        .join("bindings");
    let target = std::env::var("TARGET").unwrap_or_default();
    let file = [format!("{target}.rs"), "generic.rs".to_string()]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .expect("cryptoki-sys bindings for this target");
    println!("cargo:rerun-if-changed={}", file.display());
    let text = std::fs::read_to_string(&file).expect("bindings readable");
    let start = text
        .find("pub struct CK_FUNCTION_LIST {")
        .expect("CK_FUNCTION_LIST in the bindings");
    let body = &text[start..];
    let end = body.find("\n}").expect("end of CK_FUNCTION_LIST");
    let names: Vec<&str> = body[..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split(':').next())
        .filter(|n| n.starts_with("C_"))
        .collect();
    assert!(names.len() >= 68, "only {} functions found", names.len());
    let mut code = format!("pub const COUNT: usize = {};\n", names.len());
    code.push_str("pub static NAMES: [&str; COUNT] = [\n");
    for n in &names {
        code.push_str(&format!("    \"{n}\",\n"));
    }
    code.push_str("];\n\n");
    code.push_str(
        "/// Fill `ours` with trampolines and remember `real`'s entries.\n\
         pub fn hook(real: &CK_FUNCTION_LIST, ours: &mut CK_FUNCTION_LIST) {\n",
    );
    for (i, n) in names.iter().enumerate() {
        code.push_str(&format!(
            "    let f = {{ real.{n} }};\n    REAL[{i}].store(f.map_or(0, |f| f as usize), Ordering::SeqCst);\n    ours.{n} = if f.is_some() {{ Wrap::<{i}>::wrap(f) }} else {{ None }};\n"
        ));
    }
    code.push_str("}\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out_dir.join("functions.rs"), code).expect("write functions.rs");
}
