# Loads the Vagrantfile with Vagrant.configure stubbed out and prints, as JSON, the machines,
# provisioning environments and secrets it computes from the topology file. The configure
# block itself is checked by real `vagrant validate` and `vagrant status` runs.
require "json"

module Vagrant
  def self.configure(_version); end
end

load ARGV.fetch(0)
topology = Kubequake.load_topology
secrets = Kubequake.secrets
machines = Kubequake.machines(topology)
puts JSON.generate(
  "machines" => machines,
  "env" => machines.to_h { |m| [m["name"], Kubequake.provision_env(topology, m, secrets)] },
  "secrets" => secrets,
  "scripts" => Kubequake.scripts,
  "default_provider" => ENV["VAGRANT_DEFAULT_PROVIDER"]
)
