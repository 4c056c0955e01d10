"""``nlp-transfer push OUTPUT_DIR --repo-id NAMESPACE/NAME``: push a finished output folder to the Hugging Face Hub."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    """Add ``push`` and its options."""
    push = subparsers.add_parser("push", help="push a finished output folder to the Hugging Face Hub",
                                 description="Push a finished output folder to the Hub. The token comes from HF_TOKEN or "
                                             "`hf auth login`; HF_ENDPOINT picks another Hub.")
    push.add_argument("output_dir")
    push.add_argument("--repo-id", required=True, help="namespace/name of the model repo, created if missing")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to commit to (created if missing); default main")
    push.add_argument("--what", default="both", choices=["both", "adapter", "merged"],
                      help="LoRA outputs: the adapter, the merged model, or both (the merged model to REPO_ID-merged)")
    push.set_defaults(run=run)


def run(args) -> int:
    """Print the output folder and the commits made as JSON."""
    from ..api import push_to_hub

    commits = push_to_hub(args.output_dir, args.repo_id, private=args.private, revision=args.revision, what=args.what)
    print(json.dumps({"output_dir": args.output_dir, "commits": commits}, indent=2))
    return 0
