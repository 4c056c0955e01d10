"""Multi-task learning (a recipe's ``tasks:`` section): one shared encoder, one head per task, one loop.

``model`` ties the task models at the encoder, ``sampling`` draws single-task batches (``train.task_sampling``),
``strategy`` merges the tasks' strategy hooks, ``evaluation`` scores every task, ``runner`` runs the single-task
stages per task (``training/stages.py``) and exports one folder per task, ``baselines`` trains each task alone for
``--single-task-baselines``, ``readme`` writes the output's index. The recipe section itself is ``recipe/multitask.py``.
May import everything below the runs (training included); must not import compare, the API or the CLI.
"""
