//! `mission report --html FILE`: the report and the dashboard's charts in
//! one self-contained HTML file, to mail or archive.
//!
//! The file carries everything it shows: the styles and the chart code of
//! `conductor serve`'s dashboard (the same files, built in here), the
//! report's data as JSON in a `<script type="application/json">` element,
//! and a small script that draws it. Its Content-Security-Policy lets it
//! load nothing from anywhere, so opening it reaches no network, and the
//! journal's text in it (case ids, failure messages) is data, set as text
//! by the script, never markup.

use std::path::Path;

use anyhow::{Context, Result};
use engine::series::View;
use serde_json::{Value, json};

/// The dashboard's styles and charts, as `conductor serve` serves them.
const STYLE: &str = include_str!("../../../server/web/style.css");
const DASHBOARD_STYLE: &str = include_str!("../../../server/web/dashboard.css");
const CHARTS: &str = include_str!("../../../server/web/dashboard-charts.js");
/// Draws the report with the chart code (`CHARTS` and this are one module).
const DRAW: &str = include_str!("html_report.js");
/// Inline styles and scripts (the file's own), nothing else: no fetch, no
/// image but `data:`, no form, no frame.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; \
                   form-action 'none'; base-uri 'none'";

/// Writes the report page for `report` (`engine::report::build`) and
/// `series` to `path`, replacing it.
pub fn write(path: &Path, report: &Value, series: &View) -> Result<()> {
    std::fs::write(path, page(report, series, engine::clock::now_us()))
        .with_context(|| format!("writing the report to {}", path.display()))
}

/// The page's text.
fn page(report: &Value, series: &View, generated_us: i64) -> String {
    let data = json!({"report": report, "series": series, "generated_us": generated_us});
    let name = report["name"].as_str().or(report["mission"].as_str()).unwrap_or("mission");
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>conductor · mission report · {title}</title>\n\
         <style>\n{STYLE}\n{DASHBOARD_STYLE}\n</style>\n</head>\n\
         <body class=\"report\" data-state=\"loading\">\n\
         <header class=\"top\"><div class=\"brand\"><span class=\"logo\" aria-hidden=\"true\">◆</span>\
         <span class=\"name\">conductor</span><span class=\"sub\">mission report</span></div></header>\n\
         <main id=\"report\"><noscript><p class=\"empty\">The charts are drawn by this file's own script; \
         the same figures are in <code>conductor mission report --json</code>.</p></noscript></main>\n\
         <script type=\"application/json\" id=\"report-data\">{json}</script>\n\
         <script type=\"module\">\n{CHARTS}\n{DRAW}\n</script>\n\
         </body>\n</html>\n",
        title = escape_html(name),
        json = script_safe(&data.to_string()),
    )
}

/// Text as HTML character data or an attribute value.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON text that cannot end the `<script>` element holding it: `<`, `>`
/// and `&` occur in JSON text only inside strings, where their `\u`
/// escapes mean the same characters to `JSON.parse`.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_code_cannot_close_its_script_element_or_load_anything() {
        for (name, code) in [("dashboard-charts.js", CHARTS), ("html_report.js", DRAW)] {
            let lower = code.to_ascii_lowercase();
            assert!(!lower.contains("</script") && !lower.contains("<!--"), "{name} would end the inline script");
            assert!(!lower.contains("import ") && !lower.contains("fetch("), "{name} must not load anything");
        }
        for (name, css) in [("style.css", STYLE), ("dashboard.css", DASHBOARD_STYLE)] {
            assert!(!css.contains("url(") && !css.contains("@import"), "{name} must not load anything");
            assert!(!css.to_ascii_lowercase().contains("</style"), "{name} would end the inline style");
        }
    }

    #[test]
    fn journal_text_stays_data() {
        let hostile = "</script><script>alert(1)</script><img src=x onerror=alert(2)>";
        let report = json!({"mission": "m-1", "name": hostile});
        let series = engine::series::Series::new("m-1", 0).view(None);
        let page = page(&report, &series, 0);
        assert!(!page.contains(hostile), "the name appears only escaped");
        assert_eq!(page.matches("</script>").count(), 2, "the page's own two script elements");
        assert!(page.contains("&lt;/script&gt;"), "the title is escaped");
        let start = page.find("id=\"report-data\">").expect("data element") + "id=\"report-data\">".len();
        let end = start + page[start..].find("</script>").expect("its end");
        let data: Value = serde_json::from_str(&page[start..end]).expect("the embedded data is JSON");
        assert_eq!(data["report"]["name"], hostile, "and reads back as it was");
    }
}
