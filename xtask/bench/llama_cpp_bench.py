"""llama.cpp (through llama-cpp-python) on the same GGUF, prompt and settings
as `conductor/examples/bench_mistralrs.rs`, for `cargo xtask bench-inference`.

Loads the model with n_threads=2 (or --threads), renders the prompt with the
GGUF's own chat template (create_chat_completion), decodes greedily
(temperature 0, top_k 1) for at most --max-tokens tokens, and prints one
JSON object with per-request wall time and llama.cpp's own prompt/decode
timings. Each timed request starts from an empty context (llm.reset()), so
the prompt is processed in full every time, as for a new case.
"""

import argparse
import json
import os
import sys
import time

import llama_cpp
import llama_cpp.llama_cpp as llama_cpp_lib
from llama_cpp import Llama


def without_extra_buffer_types():
    """Load weights into plain CPU buffers (llama.cpp's --no-extra-bufts).

    With GGML_NATIVE on a CPU with AMX (this machine: Xeon, amx_int8),
    llama.cpp 0.3.36 puts Q4_1 weights in its AMX buffer type and
    segfaults in ggml_backend_amx_mul_mat on the first decode. The plain
    CPU path is llama.cpp's AVX-512/AVX2 kernels, which is also the fair
    comparison: mistral.rs has no AMX kernels. Llama() does not expose the
    model parameter, so its default is patched before the model loads.
    """
    default = llama_cpp_lib.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p

    llama_cpp_lib.llama_model_default_params = params


def cpu_seconds():
    t = os.times()
    return t.user + t.system


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-tokens", type=int, default=56)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--requests", type=int, default=5)
    ap.add_argument("--keep-prefix", action="store_true",
                    help="let llama-cpp-python reuse the previous request's matching prefix (its default)")
    ap.add_argument("--extra-bufts", action="store_true",
                    help="let llama.cpp use its extra buffer types (AMX, repack); segfaults here with Q4_1 on AMX")
    args = ap.parse_args()
    if not args.extra_bufts:
        without_extra_buffer_types()

    t0 = time.perf_counter()
    llm = Llama(model_path=args.model, n_threads=args.threads, n_threads_batch=args.threads,
                n_ctx=2048, n_batch=512, seed=0, verbose=False)
    load_s = time.perf_counter() - t0
    messages = [{"role": "user", "content": args.prompt}]

    def one():
        if not args.keep_prefix:
            llm.reset()
        llama_cpp.llama_perf_context_reset(llm.ctx)
        start = time.perf_counter()
        out = llm.create_chat_completion(messages=messages, max_tokens=args.max_tokens,
                                         temperature=0.0, top_k=1, top_p=1.0, min_p=0.0,
                                         repeat_penalty=1.0, seed=0)
        wall = time.perf_counter() - start
        perf = llama_cpp.llama_perf_context(llm.ctx)
        usage = out["usage"]
        return {
            "text": out["choices"][0]["message"]["content"],
            "finish_reason": out["choices"][0]["finish_reason"],
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "wall_s": wall,
            "prompt_s": perf.t_p_eval_ms / 1000.0,
            "prompt_evaluated": perf.n_p_eval,
            "decode_s": perf.t_eval_ms / 1000.0,
            "decode_runs": perf.n_eval,
        }

    for i in range(args.warmup):
        s = one()
        print(f"warm-up {i}: {s['wall_s']:.3f} s", file=sys.stderr)

    load_before = load_average()
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    samples = []
    for i in range(args.requests):
        s = one()
        s["decode_tok_s"] = s["decode_runs"] / s["decode_s"] if s["decode_s"] > 0 else 0.0
        print(f"request {i}: wall {s['wall_s']:.3f} s, prompt {s['prompt_tokens']} tok "
              f"({s['prompt_evaluated']} evaluated) in {s['prompt_s']:.3f} s, completion "
              f"{s['completion_tokens']} tok, {s['decode_runs']} decode runs in {s['decode_s']:.3f} s "
              f"({s['decode_tok_s']:.1f} tok/s), finish {s['finish_reason']}", file=sys.stderr)
        samples.append(s)
    wall = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_before

    def mean(key):
        return sum(s[key] for s in samples) / len(samples)

    print(f"text: {samples[0]['text']!r}", file=sys.stderr)
    print(json.dumps({
        "engine": "llama.cpp direct",
        "llama_cpp_python": llama_cpp.__version__,
        "threads": args.threads,
        "extra_bufts": args.extra_bufts,
        "keep_prefix": args.keep_prefix,
        "load_s": load_s,
        "text": samples[0]["text"],
        "sequential": {
            "requests": len(samples),
            "prompt_tokens": mean("prompt_tokens"),
            "completion_tokens": mean("completion_tokens"),
            "wall_s_per_request": mean("wall_s"),
            "prompt_s": mean("prompt_s"),
            "decode_s": mean("decode_s"),
            "decode_tok_s": mean("decode_tok_s"),
            "aggregate_tok_s": sum(s["completion_tokens"] for s in samples) / wall,
            "cpu_cores_used": cpu / wall,
            "load_before": load_before,
            "load_after": load_average(),
        },
    }))


if __name__ == "__main__":
    main()
