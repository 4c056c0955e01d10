"""The ``distill`` strategy: a teacher's logits (or hidden states) into a smaller student.

``strategy`` is the strategy, ``models`` builds students and teachers, ``cross_tokenizer`` aligns a teacher
with another tokenizer. May import what strategies may import.
"""
