"""The offline harness: the program run under Pulumi's mocks with the config the CLI would give it
(pulumi_project.py), its registrations recorded (mocks.py), one Plan per run (offline.py)."""
