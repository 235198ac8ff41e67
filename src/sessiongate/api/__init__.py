# Generated package marker (make proto).
