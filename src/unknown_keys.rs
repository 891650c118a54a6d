//! Unknown keys in a pool config: the peer crates ignore them silently, so rejecting them would
//! break configurations that work there; a warning names them instead, so a typo
//! (`PG__HOTS`) is not lost.

use serde_ignored::Path;

/// A `serde_ignored` callback that logs each ignored key of the config named `config`.
pub(crate) fn warn_ignored(config: &'static str) -> impl FnMut(Path<'_>) {
    move |path| {
        tracing::warn!(
            target: "dbretry::config",
            config,
            key = %dotted(&path),
            "unknown configuration key ignored; check its spelling"
        );
    }
}

/// `pool.timeouts.wiat`: the keys only (serde_ignored also shows `?` for each `Option`).
fn dotted(path: &Path<'_>) -> String {
    let mut keys = Vec::new();
    let mut next = Some(path);
    while let Some(path) = next {
        next = match path {
            Path::Root => None,
            Path::Map { parent, key } => {
                keys.push(key.clone());
                Some(*parent)
            }
            Path::Seq { parent, index } => {
                keys.push(index.to_string());
                Some(*parent)
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => Some(*parent),
        };
    }
    keys.reverse();
    keys.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_unknown_keys_are_named_by_their_dotted_path() {
        let mut seen = Vec::new();
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Outer {
            inner: Option<Inner>,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Inner {
            port: Option<u16>,
        }
        let toml = "hots = 1\n[inner]\nport = 5\nprot = 6\n";
        let _: Outer = serde_ignored::deserialize(toml::Deserializer::new(toml), |path| {
            seen.push(dotted(&path))
        })
        .unwrap();
        assert_eq!(seen, ["hots", "inner.prot"]);
    }
}
