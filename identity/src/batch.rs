//! Batch verification: many signatures checked in one multi-scalar
//! multiplication, with the encoding checks of strict verification first.

use crate::{IdentityError, PublicKey, Signature};

/// Verifies every `(key, message, signature)` item at once; `Ok` only if
/// the whole batch is valid. An empty batch is valid.
///
/// Each item first passes the checks that [`PublicKey::verify`] (dalek's
/// `verify_strict`) makes on encodings and that the batch equation alone
/// would not:
///
/// - `S` is canonical (`S < L`), so `S + L` is not a second signature;
/// - `R` decodes to a curve point, its encoding is canonical (`verify_strict`
///   compares the encoded `R` byte for byte with a canonical encoding, so it
///   refuses any other spelling), and it is not of small order;
/// - the key is valid, canonically encoded and not of small order, which
///   [`PublicKey`] guarantees from construction.
///
/// Then ed25519-dalek's `verify_batch` checks `Σ zᵢ·Dᵢ = 0`, where
/// `Dᵢ = Sᵢ·B − Rᵢ − kᵢ·Aᵢ` is item `i`'s defect (zero for a valid
/// signature) and the `zᵢ` are 128-bit coefficients it derives from the
/// whole batch (a transcript of every `R`, key, message hash and `S`), so a
/// given batch always gets the same verdict. Like `verify_strict`, which
/// accepts exactly when `Dᵢ = 0`, this is cofactorless. A defect with any
/// prime-order part makes the batch fail except with probability about
/// 2⁻¹²⁸, so for keys and signatures made honestly (`R` and `A` in the
/// prime-order subgroup) the two verdicts agree.
///
/// They can differ only on an item built for it by the holder of the
/// private key: a small-order (torsion) point `T` added to `R`, or a key
/// built as `A = a·B + T` (small-order keys are refused, but mixed-order
/// ones cannot be detected cheaply). Signing with the private key then
/// leaves a defect `Dᵢ` of small order. Where it is not zero,
/// `verify_strict` rejects the item every time, while the batch accepts it
/// whenever `zᵢ·Dᵢ = 0`, which happens with probability 1/2, 1/4 or 1/8
/// (by the order of `Dᵢ`), and the key holder can try messages until a
/// batch accepts. This is not a forgery: making a defect with no
/// prime-order part takes the private key, so the signer did sign that
/// message. But it does mean a verifier using this function and one using
/// [`PublicKey::verify`] can disagree about such a signature; where all
/// verifiers must reach the same verdict even on a hostile signer's input,
/// verify one by one. (Ruling it out here would take a full scalar
/// multiplication per `R` and key, the cost that batching exists to save.)
///
/// On failure the error names the first item that fails strict
/// verification ([`IdentityError::BadSignatureInBatch`]): the encoding
/// checks find it directly, and when the batch equation fails each item is
/// verified alone to find it.
pub fn verify_batch<M: AsRef<[u8]>>(items: &[(PublicKey, M, Signature)]) -> Result<(), IdentityError> {
    let len = items.len();
    let bad = |index: usize, key: &PublicKey| IdentityError::BadSignatureInBatch { index, len, key_id: key.key_id() };
    for (index, (key, _, signature)) in items.iter().enumerate() {
        if !signature.s_is_canonical() || !r_is_strict(&signature.r_bytes()) {
            return Err(bad(index, key));
        }
    }
    if items.is_empty() {
        return Ok(());
    }
    let messages: Vec<&[u8]> = items.iter().map(|(_, m, _)| m.as_ref()).collect();
    let signatures: Vec<ed25519_dalek::Signature> =
        items.iter().map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.to_bytes())).collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = items.iter().map(|(k, _, _)| k.dalek()).collect();
    if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
        return Ok(());
    }
    // Rare path (a bad batch): find the culprit so the caller can act on it.
    for (index, (key, message, signature)) in items.iter().enumerate() {
        if key.verify(message.as_ref(), signature).is_err() {
            return Err(bad(index, key));
        }
    }
    Err(IdentityError::BatchInconsistent { len })
}

/// `R` is canonically encoded and not of small order — decided on the
/// bytes alone, without decompressing the point (a field inversion, which
/// cost about a third of batch verification when done here). Whether `R`
/// is on the curve at all the batch equation decides: dalek refuses a
/// batch whose `R` does not decompress.
fn r_is_strict(r: &[u8; 32]) -> bool {
    y_is_canonical(r) && !SMALL_ORDER_ENCODINGS.contains(r)
}

/// The field prime p = 2^255 - 19, little-endian.
const P: [u8; 32] = {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// A canonical encoding has y < p, and no sign bit on a point whose x is
/// zero (y = 1 or y = p - 1: "negative zero" is a second spelling).
fn y_is_canonical(r: &[u8; 32]) -> bool {
    let mut y = *r;
    let sign = y[31] >> 7;
    y[31] &= 0x7f;
    // y < p, comparing little-endian bytes from the most significant.
    let below_p = y.iter().rev().zip(P.iter().rev()).find(|(a, b)| a != b).is_some_and(|(a, b)| a < b);
    if !below_p {
        return false;
    }
    let mut one = [0u8; 32];
    one[0] = 1;
    let mut p_minus_one = P;
    p_minus_one[0] -= 1;
    !(sign == 1 && (y == one || y == p_minus_one))
}

/// The canonical encodings of the eight points of small order (the
/// torsion subgroup), computed once from curve25519-dalek's constants
/// rather than typed in.
static SMALL_ORDER_ENCODINGS: std::sync::LazyLock<Vec<[u8; 32]>> = std::sync::LazyLock::new(|| {
    curve25519_dalek::constants::EIGHT_TORSION.iter().map(|p| p.compress().to_bytes()).collect()
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytewise check must agree with "decompress, re-compress and
    /// compare, then test the order" on every encoding that decompresses.
    #[test]
    fn bytewise_r_check_agrees_with_decompression() {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        let reference = |r: &[u8; 32]| {
            CompressedEdwardsY(*r).decompress().map(|p| p.compress().to_bytes() == *r && !p.is_small_order())
        };
        let mut inputs: Vec<[u8; 32]> = Vec::new();
        for t in EIGHT_TORSION.iter() {
            let b = t.compress().to_bytes();
            let mut flipped = b;
            flipped[31] ^= 0x80;
            inputs.extend([b, flipped]);
        }
        // y = p + 0 and y = p + 1 (non-canonical spellings of y = 0, 1), both signs.
        for low in [0xedu8, 0xee] {
            let mut y = [0xffu8; 32];
            y[0] = low;
            y[31] = 0x7f;
            let mut signed = y;
            signed[31] |= 0x80;
            inputs.extend([y, signed]);
        }
        for i in 0u32..4000 {
            inputs.push(*blake3::hash(&i.to_le_bytes()).as_bytes());
            let point = curve25519_dalek::constants::ED25519_BASEPOINT_POINT * Scalar::from(u64::from(i) + 1);
            inputs.push(point.compress().to_bytes());
        }
        let mut compared = 0;
        for r in &inputs {
            if let Some(expected) = reference(r) {
                assert_eq!(r_is_strict(r), expected, "R = {}", hex::encode(r));
                compared += 1;
            }
        }
        assert!(compared > 4000, "{compared} encodings compared");
    }
    use crate::{Keypair, Role};
    use curve25519_dalek::Scalar;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn signed(n: usize) -> Vec<(PublicKey, Vec<u8>, Signature)> {
        (0..n)
            .map(|i| {
                let key = Keypair::generate(Role::Agent);
                let message = format!("entry {i}").into_bytes();
                let sig = key.sign(&message);
                (key.public(), message, sig)
            })
            .collect()
    }

    #[test]
    fn empty_batch_is_valid() {
        let none: &[(PublicKey, &[u8], Signature)] = &[];
        verify_batch(none).expect("empty batch");
    }

    #[test]
    fn valid_batch_passes_and_one_bad_item_fails_it() {
        let mut items = signed(9);
        verify_batch(&items).expect("valid batch");
        items[5].1 = b"tampered".to_vec();
        match verify_batch(&items) {
            Err(IdentityError::BadSignatureInBatch { index: 5, len: 9, .. }) => {}
            other => panic!("expected item 5 to be named, got {other:?}"),
        }
    }

    #[test]
    fn borrowed_messages_work_too() {
        let key = Keypair::generate(Role::Reviewer);
        let sig = key.sign(b"m");
        verify_batch(&[(key.public(), b"m".as_slice(), sig)]).expect("valid");
    }

    /// `S + L` reduces to the same scalar. Both our pre-check and dalek's
    /// own decoding must refuse it; test our pre-check and that dalek's batch
    /// refuses it without our help.
    #[test]
    fn non_canonical_s_is_refused() {
        let key = Keypair::generate(Role::Agent);
        let sig = key.sign(b"m").to_bytes();
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig[32..]);
        let s_plus_l = add_le(&s, &GROUP_ORDER_LE);
        let mut bent = sig;
        bent[32..].copy_from_slice(&s_plus_l);
        let bent = Signature::from_bytes(bent);
        assert!(!bent.s_is_canonical());
        assert!(key.public().verify(b"m", &bent).is_err());
        assert!(verify_batch(&[(key.public(), b"m".as_slice(), bent)]).is_err());
        let dalek = ed25519_dalek::verify_batch(
            &[b"m".as_slice()],
            &[ed25519_dalek::Signature::from_bytes(&bent.to_bytes())],
            &[key.public().dalek()],
        );
        assert!(dalek.is_err(), "dalek's batch itself refuses S >= L");
    }

    /// A signature whose `R` is a small-order point, with `S` chosen so the
    /// cofactorless equation holds against a key with the same torsion, is
    /// refused by the pre-check. Here: `R` = a torsion point itself.
    #[test]
    fn small_order_r_is_refused() {
        let key = Keypair::generate(Role::Agent);
        for torsion in EIGHT_TORSION.iter() {
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(torsion.compress().as_bytes());
            bytes[32..].copy_from_slice(Scalar::ZERO.as_bytes());
            let sig = Signature::from_bytes(bytes);
            assert!(verify_batch(&[(key.public(), b"m".as_slice(), sig)]).is_err());
        }
    }

    /// A key holder adds an order-2 point to `R` and signs consistently with
    /// the altered `R`. `verify_strict` always rejects it; the batch check
    /// accepts it for about half of all messages. This pins the documented
    /// difference down (and shows it needs the private key).
    #[test]
    fn torsioned_r_from_the_key_holder_is_rejected_by_strict_only() {
        use curve25519_dalek::traits::IsIdentity;
        use sha2::{Digest, Sha512};
        let key = Keypair::generate(Role::Agent);
        let a = key.signing.to_scalar();
        let public = key.public();
        // EIGHT_TORSION[4] is (0, -1), the point of order 2.
        let order_two = EIGHT_TORSION[4];
        assert!(order_two.is_small_order() && !order_two.is_identity());
        let mut batch_accepted = 0;
        for i in 0u64..64 {
            let message = i.to_le_bytes();
            let r = Scalar::from(1000 + i);
            let big_r = (curve25519_dalek::constants::ED25519_BASEPOINT_POINT * r + order_two).compress();
            let k = Scalar::from_hash(
                Sha512::new().chain_update(big_r.as_bytes()).chain_update(public.to_bytes()).chain_update(message),
            );
            let s = r + k * a;
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(big_r.as_bytes());
            bytes[32..].copy_from_slice(s.as_bytes());
            let sig = Signature::from_bytes(bytes);
            assert!(public.verify(&message, &sig).is_err(), "strict must reject");
            if verify_batch(&[(public, message.as_slice(), sig)]).is_ok() {
                batch_accepted += 1;
            }
        }
        assert!(batch_accepted > 0, "batch accepts some torsioned R, as documented");
        assert!(batch_accepted < 64, "and rejects others");
    }

    /// L = 2^252 + 27742317777372353535851937790883648493, little-endian.
    const GROUP_ORDER_LE: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    /// Adds two little-endian 256-bit numbers (no overflow for S + L here).
    fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
            out[i] = (sum & 0xff) as u8;
            carry = sum >> 8;
        }
        out
    }
}
