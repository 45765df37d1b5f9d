"""Named sweeps: keyword arguments of ``fastopt.sweep.run`` for experiments worth repeating.

``run(**TEXTBOOK)`` runs the textbook's; ``fastopt sweep --textbook`` starts from the same
dict, and options given with it replace its values.
"""

#: The textbook's experiment (Saito, "Deep Learning from Scratch", ch. 6,
#: hyperparameter_optimization.py): 100 random trials of SGD with lr = 10**U(-6, -2) and
#: weight decay = 10**U(-8, -4) on the first 500 MNIST training images, shuffled, 20% of
#: them (100) held out for validation, a ReLU network 784-100-100-100-100-100-100-10 with He
#: weights (randn * sqrt(2 / fan_in)), 50 epochs of batch 100 drawn with replacement
#: (np.random.choice: 4 batches per epoch, 200 updates), the best 20 by final validation
#: accuracy shown. One difference: the book's weight decay is an L2 penalty on the weights
#: only; fastopt's SGD(weight_decay=wd) adds wd * p to the gradient of every parameter,
#: biases included (torch.optim's rule). ``run(**TEXTBOOK)`` runs it.
TEXTBOOK = dict(
    space="optimizer=sgd lr=loguniform(1e-6,1e-2) wd=loguniform(1e-8,1e-4) batch=100",
    trials=100, dataset="mnist", train_samples=500, val_fraction=0.2,
    hidden=(100,) * 6, epochs=50, evals=50, replacement=True,
    init="he_normal:truncated=false",
)
#: trials the textbook shows (best.csv, the table and best_curves.png of --textbook)
TEXTBOOK_TOP = 20
