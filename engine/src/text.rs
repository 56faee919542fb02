//! Text helpers shared by the host, the gates, replay and the server: a
//! leaf module, so none of them imports another for a string function.

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate_utf8(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_a_character_boundary() {
        let mut s = "aé".to_owned(); // 'é' is two bytes: 1..3
        truncate_utf8(&mut s, 2);
        assert_eq!(s, "a");
        let mut s = "abc".to_owned();
        truncate_utf8(&mut s, 5);
        assert_eq!(s, "abc");
    }
}
