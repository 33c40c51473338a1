# bash completion for spiderpool-agent: the binary completes its own commands
# and options (hashicorp/cli with posener/complete) when bash runs it with
# COMP_LINE set. Installed as /usr/share/bash-completion/completions/spiderpool-agent.
complete -C spiderpool-agent spiderpool-agent
