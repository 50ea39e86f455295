// `dbroker completion bash`: a bash completion script made from the
// command tree, so it lists exactly the commands and flags the CLI has
// (zsh can load it through bashcompinit).

import type { Command } from 'commander';

function flagsOf(cmd: Command): string[] {
  return cmd.options.filter((o) => !o.hidden && o.long).map((o) => `-${o.long!.replace(/^--/, '')}`);
}

/** The script: completes command words, then the flags of the command given (Vault's single-dash style). */
export function bashCompletion(program: Command): string {
  const cases: string[] = [];
  const top = program.commands.map((c) => c.name());
  for (const cmd of program.commands) {
    if (cmd.commands.length > 0) {
      cases.push(`    "${cmd.name()}") words="${cmd.commands.map((c) => c.name()).join(' ')}" ;;`);
      for (const sub of cmd.commands) cases.push(`    "${cmd.name()} ${sub.name()}") words="${flagsOf(sub).join(' ')}" ;;`);
    } else cases.push(`    "${cmd.name()}") words="${flagsOf(cmd).join(' ')}" ;;`);
  }
  return `# bash completion for dbroker; load with: source <(dbroker completion bash)
_dbroker() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" key="" words=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    words="${top.join(' ')}"
  else
    key="\${COMP_WORDS[1]}"
    if [ "$COMP_CWORD" -ge 3 ] || [[ "$cur" == -* ]]; then
      case "\${COMP_WORDS[1]} \${COMP_WORDS[2]}" in
${cases.filter((c) => c.includes(' ') && /^ {4}"\S+ \S+"/.test(c)).map((c) => '  ' + c).join('\n')}
        *) ;;
      esac
    fi
    if [ -z "$words" ]; then
      case "$key" in
${cases.filter((c) => /^ {4}"\S+"\)/.test(c)).map((c) => '  ' + c).join('\n')}
      esac
    fi
  fi
  COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
complete -o default -F _dbroker dbroker
`;
}
