# The load balancer in front of ingest: HTTPS only (HTTP redirects), and only the API's
# event paths are forwarded: POST /exposure and /v1/* (/v1/exposures). /healthz, /readyz
# and /metrics stay inside the VPC.

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "exposures load balancer: HTTPS (and HTTP, redirected) from clients; out to ingest"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each          = toset(var.alb_ingress_cidr_blocks)
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from SDK callers"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:Port 80 only answers a redirect to HTTPS (aws_lb_listener.http); browsers and SDKs configured with http:// reach the API that way.
  for_each          = toset(var.alb_ingress_cidr_blocks)
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from SDK callers, redirected to HTTPS"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_ingest" {
  security_group_id            = aws_security_group.alb.id
  description                  = "HTTP API of ingest"
  ip_protocol                  = "tcp"
  from_port                    = local.ports.ingest
  to_port                      = local.ports.ingest
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_lb" "ingest" {
  #checkov:skip=CKV_AWS_91:Access logs are opt-in (alb_access_logs_bucket): they need a bucket with the ELB log-delivery policy, which this module does not own.
  #checkov:skip=CKV2_AWS_76:No WAF is attached by this module (see CKV2_AWS_28); the one given as waf_web_acl_arn is its owner's. Nothing behind it runs Java/Log4j.
  #checkov:skip=CKV2_AWS_28:A WAF is opt-in (waf_web_acl_arn): managed rule sets refuse bodies over 8 KiB, below the API's batch size, so the ACL must be tuned by its owner; ingest bounds memory, bodies, connections and rates itself.
  name                       = "${var.name}-ingest"
  load_balancer_type         = "application"
  internal                   = var.alb_internal
  subnets                    = var.alb_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.alb_deletion_protection
  # Ingest closes idle keep-alive connections after --header-read-timeout (10 s); the load
  # balancer must give up on them first.
  idle_timeout = 5

  dynamic "access_logs" {
    for_each = var.alb_access_logs_bucket == "" ? [] : [var.alb_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = "${var.name}-ingest"
      enabled = true
    }
  }
}

resource "aws_wafv2_web_acl_association" "ingest" {
  count        = var.waf_web_acl_arn == "" ? 0 : 1
  resource_arn = aws_lb.ingest.arn
  web_acl_arn  = var.waf_web_acl_arn
}

resource "aws_lb_target_group" "ingest" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; ingest serves plain HTTP inside the VPC (the binary has no TLS listener), reachable only from the load balancer's security group.
  name                 = "${var.name}-ingest"
  port                 = local.ports.ingest
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 35

  # Liveness, not /readyz: a 503 from /readyz (Kafka down and the spool full) would make ECS
  # replace the tasks, and a replaced task loses its spool. Ingest answers 503 itself then.
  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.ingest.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.alb_ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "application/json"
      status_code  = "404"
      message_body = "{\"error\":{\"code\":\"not_found\",\"message\":\"no such endpoint\"}}"
    }
  }
}

resource "aws_lb_listener_rule" "api" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10

  condition {
    path_pattern {
      values = ["/exposure", "/v1/*"]
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.ingest.arn
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.ingest.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}
