"""Where moto answers differently from AWS in a way a cloud-controller-manager acts on, the
test ground makes it answer as AWS does. Each change is small, applied at start by serve.py,
and listed in e2e/README.md ("What moto gets wrong").

Without these, a CCM reconciling a Classic ELB on moto would see a difference AWS never shows
and "repair" it, and the tests would measure the emulator rather than the controller:

- A new Classic ELB has no health check in moto until one is configured; in AWS it always has
  one (the default: TCP to the first listener's instance port, interval 30 s, timeout 5 s,
  2 unhealthy, 10 healthy). Upstream's CCM dereferences it and panics on moto.
- moto stores no InstanceProtocol: DescribeLoadBalancers echoes the front protocol as the
  instance protocol, so an SSL listener with a TCP backend reads back as SSL/SSL. AWS keeps
  what CreateLoadBalancer(Listeners) was given.
- A new Classic ELB's connection-draining attribute has no timeout in moto; AWS reports its
  default, 300 s.
- moto names an NLB `<name>-1.<region>.elb.amazonaws.com`, the shape of a Classic ELB's name;
  AWS's is `<name>-<hex>.elb.<region>.amazonaws.com`. Upstream's CCM tells the two types apart
  by that suffix (and refuses to re-ensure an NLB whose hostname looks classic).
- moto gives every ELBv2 listener an SslPolicy; AWS gives one only to TLS and HTTPS listeners.
  Upstream's CCM modifies a TCP listener that reports one.
- An NLB created without a Scheme has an empty one in moto; AWS makes it internet-facing.
- moto does not serve EC2 DescribeInstanceTopology (HTTP 500). AWS answers it for every
  instance, with an empty list for instance types that have no topology (such as the m5.large
  the seed launches); both CCMs ask it once per instance type when a Node joins.
- ELBv2 attributes AWS always returns are missing, so a CCM that compares what it wants with
  what it reads would write them on every adoption: `access_logs.s3.enabled` (false) on a load
  balancer, and on TCP/UDP/TLS target groups `proxy_protocol_v2.enabled` (false) and
  `preserve_client_ip.enabled` (true for instance targets and for UDP; false for IP targets
  over TCP/TLS).
- DeleteLoadBalancerListeners with several ports keeps, once for each port, every listener not
  on that port: deleting ports A and B at once brings A's and B's listeners back and doubles the
  others (the chaos soak found a Classic ELB holding 32,768 copies of one listener). AWS removes
  every listener on any of the ports.
"""

import hashlib

from moto.elb import models as elb
from moto.elbv2 import models as elbv2


def _keep_instance_protocols() -> None:
    def instance_protocol(self):
        return getattr(self, "_instance_protocol", None) or self.protocol

    elb.FakeListener.instance_protocol = property(instance_protocol)

    def remember(listeners, ports):
        for port in ports:
            wanted = port.get("InstanceProtocol") or port.get("instance_protocol")
            lb_port = port.get("LoadBalancerPort") or port.get("load_balancer_port")
            for listener in listeners:
                if str(listener.load_balancer_port) == str(lb_port) and wanted:
                    listener._instance_protocol = str(wanted).upper()

    original_init = elb.LoadBalancer.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        remember(self.listeners, kwargs.get("ports") or [])

    elb.LoadBalancer.__init__ = init

    original_add = elb.ELBBackend.create_load_balancer_listeners

    def add_listeners(self, name, ports):
        balancer = original_add(self, name, ports)
        if balancer is not None:
            remember(balancer.listeners, ports)
        return balancer

    elb.ELBBackend.create_load_balancer_listeners = add_listeners


def _draining_timeout() -> None:
    original = elb.LoadBalancer.get_default_attributes.__func__

    def defaults(cls):
        attributes = original(cls)
        attributes["connection_draining"] = {"enabled": False, "timeout": 300}
        return attributes

    elb.LoadBalancer.get_default_attributes = classmethod(defaults)


def _default_health_check() -> None:
    original_create = elb.ELBBackend.create_load_balancer

    def create(self, *args, **kwargs):
        balancer = original_create(self, *args, **kwargs)
        if balancer.health_check is None and balancer.listeners:
            balancer.health_check = elb.FakeHealthCheck(
                timeout="5",
                healthy_threshold="10",
                unhealthy_threshold="2",
                interval="30",
                target=f"TCP:{balancer.listeners[0].instance_port}",
            )
        return balancer

    elb.ELBBackend.create_load_balancer = create


def _elbv2_default_attributes() -> None:
    original_lb = elbv2.FakeLoadBalancer.__init__

    def lb_init(self, *args, **kwargs):
        original_lb(self, *args, **kwargs)
        self.attrs.setdefault("access_logs.s3.enabled", "false")
        if not self.scheme:
            self.scheme = "internet-facing"
        if self.type == "network":
            region = self.arn.split(":")[3]
            suffix = hashlib.sha256(self.arn.encode()).hexdigest()[:16]
            self.dns_name = f"{self.name}-{suffix}.elb.{region}.amazonaws.com"

    elbv2.FakeLoadBalancer.__init__ = lb_init

    original_tg = elbv2.FakeTargetGroup.__init__

    def tg_init(self, *args, **kwargs):
        original_tg(self, *args, **kwargs)
        if self.protocol in ("TCP", "UDP", "TLS", "TCP_UDP"):
            preserve = self.target_type == "instance" or self.protocol in ("UDP", "TCP_UDP")
            self.attributes.setdefault("preserve_client_ip.enabled", "true" if preserve else "false")
            self.attributes.setdefault("proxy_protocol_v2.enabled", "false")

    elbv2.FakeTargetGroup.__init__ = tg_init


def _ssl_policy_only_for_tls() -> None:
    original = elbv2.ELBv2Backend.create_listener

    def create_listener(self, load_balancer_arn, protocol, port, ssl_policy, *args, **kwargs):
        if str(protocol).upper() not in ("HTTPS", "TLS"):
            ssl_policy = None
        return original(self, load_balancer_arn, protocol, port, ssl_policy, *args, **kwargs)

    elbv2.ELBv2Backend.create_listener = create_listener


def _instance_topology() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.responses import EC2Response

    def describe_instance_topology(self):
        return ActionResult({"Instances": []})

    EC2Response.describe_instance_topology = describe_instance_topology


def _delete_listeners_by_port() -> None:
    def delete_listeners(self, name, ports):
        balancer = self.get_load_balancer(name)
        if balancer:
            gone = {int(p) for p in ports}
            balancer.listeners = [l for l in balancer.listeners if int(l.load_balancer_port) not in gone]
        return balancer

    elb.ELBBackend.delete_load_balancer_listeners = delete_listeners


def apply() -> None:
    _keep_instance_protocols()
    _default_health_check()
    _draining_timeout()
    _elbv2_default_attributes()
    _ssl_policy_only_for_tls()
    _instance_topology()
    _delete_listeners_by_port()
