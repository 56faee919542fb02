//! Metering: the arithmetic every paid model call goes through, a cell's
//! `host.infer` and a gateway request alike, so the two cannot price,
//! bound or charge a call differently.
//!
//! A call is [`quote`]d before anything is reserved: its prompt has been
//! counted by the model's own tokenizer (`Models::prompt`), `max_tokens`
//! must be at least 1, prompt plus `max_tokens` must fit the model's
//! context, and its worst case (the exact prompt plus every token it may
//! generate, at the caller's prices) must fit a `u64`. That worst case is
//! what is reserved, never "whatever is left". When the call is answered,
//! [`Quote::charge`] prices what it really used and caps it at the worst
//! case: a backend that reported more tokens than it was allowed (or a
//! price that would overflow) is charged the reservation, never more.
//!
//! All arithmetic is checked; nothing saturates silently.

use models::Price;

/// A call, counted and priced before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    pub price: Price,
    /// The most the call can cost: what is reserved.
    pub worst_case: u64,
}

/// Why a call cannot be quoted; nothing is reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("max_tokens must be at least 1")]
    NoTokens,
    #[error(
        "prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the model's context of {context} tokens"
    )]
    Context { prompt_tokens: u32, max_tokens: u32, context: u32 },
    #[error(
        "the call's price overflows: {prompt_tokens} prompt and {max_tokens} completion tokens at {} and {} a token",
        price.prompt,
        price.completion
    )]
    Overflow { prompt_tokens: u32, max_tokens: u32, price: Price },
}

/// What an answered call is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// Posted to the budget: the cost, at most the reservation.
    pub posted: u64,
    /// The cost at the quoted prices, if it fits a `u64`; above `posted`
    /// only if the backend used more than it was allowed.
    pub uncapped: Option<u64>,
}

/// `prompt` and `completion` tokens at `price`, or `None` on overflow.
pub fn cost(price: Price, prompt: u32, completion: u32) -> Option<u64> {
    u64::from(prompt).checked_mul(price.prompt)?.checked_add(u64::from(completion).checked_mul(price.completion)?)
}

/// Checks a counted call against its model's `context` and prices its
/// worst case.
pub fn quote(price: Price, context: u32, prompt_tokens: u32, max_tokens: u32) -> Result<Quote, QuoteError> {
    if max_tokens == 0 {
        return Err(QuoteError::NoTokens);
    }
    if u64::from(prompt_tokens) + u64::from(max_tokens) > u64::from(context) {
        return Err(QuoteError::Context { prompt_tokens, max_tokens, context });
    }
    let worst_case =
        cost(price, prompt_tokens, max_tokens).ok_or(QuoteError::Overflow { prompt_tokens, max_tokens, price })?;
    Ok(Quote { prompt_tokens, max_tokens, price, worst_case })
}

impl Quote {
    /// What the call costs for the tokens it really used, capped at the
    /// reservation.
    pub fn charge(&self, prompt_tokens: u32, completion_tokens: u32) -> Charge {
        let uncapped = cost(self.price, prompt_tokens, completion_tokens);
        Charge { posted: uncapped.map_or(self.worst_case, |c| c.min(self.worst_case)), uncapped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: Price = Price { prompt: 1, completion: 2 };

    #[test]
    fn the_worst_case_is_the_prompt_plus_every_allowed_token() {
        let q = quote(PRICE, 2048, 100, 50).expect("fits");
        assert_eq!(q.worst_case, 100 + 2 * 50);
        assert_eq!(q.charge(100, 20), Charge { posted: 140, uncapped: Some(140) });
        // A backend that used more than it was allowed is charged the
        // reservation, never more.
        assert_eq!(q.charge(100, 80), Charge { posted: 200, uncapped: Some(260) });
    }

    #[test]
    fn context_and_zero_tokens_are_refused() {
        assert_eq!(quote(PRICE, 2048, 10, 0), Err(QuoteError::NoTokens));
        assert_eq!(
            quote(PRICE, 2048, 2000, 49),
            Err(QuoteError::Context { prompt_tokens: 2000, max_tokens: 49, context: 2048 })
        );
        assert!(quote(PRICE, 2048, 2000, 48).is_ok(), "exactly the context fits");
        // No overflow in the context check itself.
        assert!(matches!(quote(PRICE, u32::MAX, u32::MAX, u32::MAX), Err(QuoteError::Context { .. })));
    }

    #[test]
    fn overflow_is_refused_before_anything_is_reserved_and_capped_after() {
        let dear = Price { prompt: u64::MAX / 2, completion: u64::MAX / 2 };
        assert_eq!(
            quote(dear, u32::MAX, 2, 1),
            Err(QuoteError::Overflow { prompt_tokens: 2, max_tokens: 1, price: dear })
        );
        let q = quote(dear, u32::MAX, 1, 1).expect("fits: exactly u64::MAX - 1");
        assert_eq!(q.worst_case, u64::MAX - 1);
        // A report that overflows is charged the reservation.
        assert_eq!(q.charge(3, 3), Charge { posted: q.worst_case, uncapped: None });
        assert_eq!(cost(Price { prompt: u64::MAX, completion: 0 }, 1, u32::MAX), Some(u64::MAX));
        assert_eq!(cost(Price { prompt: u64::MAX, completion: 1 }, 1, 1), None);
    }
}
