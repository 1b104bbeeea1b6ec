//! The forms of a task's name (DESIGN.md, "Names").

/// Whether `name` is `<domain>.<task>`, each part snake_case starting with a letter.
pub fn is_valid_full_name(name: &str) -> bool {
    let part = |p: &str| {
        p.starts_with(|c: char| c.is_ascii_lowercase())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    matches!(name.split_once('.'), Some((domain, task)) if part(domain) && part(task))
}

/// `toolbox.kpi_acumulado` → `kpi_acumulado`.
pub fn clean_name(full: &str) -> &str {
    full.split_once('.').map_or(full, |(_, task)| task)
}

/// `toolbox.kpi_acumulado` → `/tasks/execute/kpi-acumulado`.
pub fn endpoint(full: &str) -> String {
    format!("/tasks/execute/{}", clean_name(full).replace('_', "-"))
}

/// What a user typed (`kpi-acumulado`, `kpi_acumulado`, `toolbox.kpi_acumulado`) in the
/// form the registry indexes: the full name when a domain is given, else the clean name.
pub fn normalize(input: &str) -> String {
    input.trim().to_ascii_lowercase().replace('-', "_")
}

/// Levenshtein distance, for "did you mean" suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_forms() {
        let cases = [
            (
                "toolbox.kpi_acumulado",
                "kpi_acumulado",
                "/tasks/execute/kpi-acumulado",
            ),
            ("background.noop", "noop", "/tasks/execute/noop"),
            (
                "datamart.tablas_cxc_2",
                "tablas_cxc_2",
                "/tasks/execute/tablas-cxc-2",
            ),
        ];
        for (full, clean, path) in cases {
            assert!(is_valid_full_name(full), "{full}");
            assert_eq!(clean_name(full), clean);
            assert_eq!(endpoint(full), path);
        }
        for bad in [
            "noop",
            "a.b.c",
            "Toolbox.kpi",
            "toolbox.kpi-acumulado",
            "toolbox.",
            "9x.y",
            "",
        ] {
            assert!(!is_valid_full_name(bad), "{bad} accepted");
        }
    }

    #[test]
    fn user_input_is_normalized() {
        assert_eq!(normalize("kpi-acumulado"), "kpi_acumulado");
        assert_eq!(
            normalize(" Toolbox.KPI-Acumulado "),
            "toolbox.kpi_acumulado"
        );
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("noop", "noop"), 0);
        assert_eq!(edit_distance("nop", "noop"), 1);
        assert_eq!(edit_distance("ecoh", "echo"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
