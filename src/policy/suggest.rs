//! "Did you mean …?" for misspelled setting names.

/// The known name closest to `name` by edit distance (case-insensitive), if there is any.
pub(crate) fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let name = name.to_ascii_lowercase();
    known
        .iter()
        .min_by_key(|candidate| edit_distance(&name, &candidate.to_ascii_lowercase()))
        .copied()
}

/// Levenshtein distance: insertions, deletions and substitutions of one character each.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_count_single_character_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("max_attempt", "max_attempts"), 1);
        assert_eq!(edit_distance("maxdelay", "max_delay"), 1);
    }

    #[test]
    fn the_closest_name_is_suggested() {
        let known = [
            "DB_RETRY_MAX_ATTEMPTS",
            "DB_RETRY_MAX_DELAY",
            "DB_RETRY_SEED",
        ];
        assert_eq!(
            closest("DB_RETRY_MAX_ATTEMPT", &known),
            Some("DB_RETRY_MAX_ATTEMPTS")
        );
        assert_eq!(
            closest("DB_RETRY_MAXDELAY", &known),
            Some("DB_RETRY_MAX_DELAY")
        );
        assert_eq!(closest("db_retry_seed", &known), Some("DB_RETRY_SEED"));
        assert_eq!(closest("x", &[]), None);
    }
}
