"""Jobs that run start to outputs: training, evaluation through the deploy path, system
identification, and policy videos."""
