"""``tulu-jax generate``: responses from a checkpoint for one prompt or a JSONL file of conversations.

Prompts are rendered with the tokenizer's own chat template when it has one, else the Tülu template
(``--chat-template`` chooses), and end with the template's generation prompt. Input lines carry
``messages`` (a trailing assistant turn is dropped) or ``prompt``; output lines are the input plus
``response`` and ``stopped`` (false when cut by ``--max-new-tokens``). Every location may be a URL
(``gs://…``). On a pod every process runs the same command; the model is read sharded over all devices and
process 0 writes (or prints) the responses, the same as one process does.
"""

from __future__ import annotations

from tulu_jax.errors import ConfigError

NAME = "generate"
USES_DEVICES = True
HELP = "generate responses from a checkpoint with its own (or the Tülu) chat template"


def add_arguments(parser) -> None:
    from tulu_jax.generation.cli_options import add_model_and_sampling_arguments

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one user message")
    source.add_argument("--input", help="JSONL with 'messages' or 'prompt' per line; a path or gs:// URL")
    parser.add_argument("--out", help="JSONL written with 'response' and 'stopped' added (default: print); a path or gs:// URL")
    add_model_and_sampling_arguments(parser, max_new_tokens=256, temperature_help="0 = greedy (default 0)")


def run(args) -> int:
    import json

    from tulu_jax import distributed
    from tulu_jax.generation.cli_options import inference_mesh_and_batch, load_checked, sampling_from_args
    from tulu_jax.generation.prompts import encode_prompt, record_messages
    from tulu_jax.generation.text import complete
    from tulu_jax.jsonl import read_jsonl, refuse_overwriting_inputs, write_jsonl

    with distributed.same_verdict("generate inputs"):  # every process refuses bad inputs with the same line
        if args.batch_size < 1 or args.max_new_tokens < 1:
            raise ConfigError("--batch-size and --max-new-tokens must be positive")
        refuse_overwriting_inputs(args.out, [("--input file", args.input), ("--checkpoint", args.checkpoint)])
        entries = [("--prompt", {"prompt": args.prompt})] if args.prompt is not None else read_jsonl(args.input)
    sampling = sampling_from_args(args, default_temperature=0.0)
    mesh, batch_size = inference_mesh_and_batch(args.batch_size)
    model = load_checked(args, mesh)
    with distributed.same_verdict("generate prompts"):
        prompts = [encode_prompt(model.tokenizer, record_messages(record, where), args.add_bos, args.chat_template)
                   for where, record in entries]
    completions = complete(
        model.params, model.config, model.tokenizer, prompts,
        sampling=sampling, max_new_tokens=args.max_new_tokens, batch_size=batch_size, seed=args.seed, mesh=mesh,
    )
    outputs = [
        {**record, "response": completion.text, "stopped": completion.stopped}
        for (_, record), completion in zip(entries, completions)
    ]
    if not distributed.is_primary():
        return 0
    if args.out is not None:
        write_jsonl(args.out, outputs)
        print(f"wrote {len(outputs)} responses to {args.out}")
    elif args.prompt is not None:
        print(outputs[0]["response"])
    else:
        for output in outputs:
            print(json.dumps(output, ensure_ascii=False))
    return 0
