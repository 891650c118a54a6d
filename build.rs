//! Sets `cfg(pools)` when a pool crate and a backend are both enabled: the shared reconnect,
//! circuit breaker and connection checks are only used then.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(pools)");
    let enabled = |feature: &str| std::env::var_os(format!("CARGO_FEATURE_{feature}")).is_some();
    if (enabled("DEADPOOL") || enabled("BB8")) && (enabled("POSTGRES") || enabled("SQLITE")) {
        println!("cargo::rustc-cfg=pools");
    }
}
