"""``python -m nlp_transfer ...`` (also what ``torchrun -m nlp_transfer`` runs)."""

from .cli import main

raise SystemExit(main())
