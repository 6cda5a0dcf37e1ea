"""Lightning callbacks of gram-lightning: result files and reports beside the training loop."""
