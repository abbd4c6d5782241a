"""From warehouse lab rows to model inputs: cleaning, the model matrix, temporal context.

Every lab value set aside or bounded is recorded with its reason; the matrix is pure.
"""
