pub mod html_report;
pub mod summary;
