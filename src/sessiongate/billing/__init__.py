"""The billing loop: payment events in, dunning evaluations, the scheduler, notifications."""
